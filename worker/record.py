"""The record we write: its schema version, and where its JSON Schema lives (``schema/record-v<N>.json``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_VERSION = 3
"""Version of the record layout; bumped on any incompatible change (v2: enrichment and near-duplicates;
v3: ``authors`` list, headline without site name, dates with their time and offset)."""


@cache
def record_schema(version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) shipped in the package for records of ``version`` (default current)."""
    return json.loads(resources.files("worker").joinpath(f"schema/record-v{version}.json").read_text())


def utc_now_iso() -> str:
    """Current time, ISO 8601 in UTC with a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
