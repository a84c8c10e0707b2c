"""The record we write: schema v1, and where its JSON Schema lives."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_VERSION = 1
"""Version of the record layout; bumped on any incompatible change."""


@cache
def record_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) shipped in the package for records of ``SCHEMA_VERSION``."""
    return json.loads(resources.files("worker").joinpath(f"schema/record-v{SCHEMA_VERSION}.json").read_text())


def utc_now_iso() -> str:
    """Current time, ISO 8601 in UTC with a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
