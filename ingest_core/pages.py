"""The packed page a process task reads from its claim-check key, for producers that bring their own pages.

The format is ``worker.runner.pack_page``'s (one zlib-compressed JSON document with html, url, final_url,
status, headers, content_type, encoding, nbytes, elapsed, fetched_at), written here again because producers
may not import ``worker``; tests/producers/test_warc.py checks that ``worker.runner.unpack_page`` reads it.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

PAGE_FIELDS = ("url", "final_url", "status", "headers", "content_type", "encoding", "nbytes", "elapsed")
"""Fields of a page besides ``html`` and ``fetched_at``."""


def pack_page(
    *,
    html: str,
    url: str,
    final_url: str,
    status: int,
    headers: dict[str, str],
    content_type: str,
    encoding: str,
    nbytes: int,
    fetched_at: str,
    elapsed: float = 0.0,
) -> bytes:
    """A page as the process stage reads it (level 3 zlib, as the fetch stage packs its pages)."""
    data: dict[str, Any] = {
        "url": url,
        "final_url": final_url,
        "status": status,
        "headers": headers,
        "content_type": content_type,
        "encoding": encoding,
        "nbytes": nbytes,
        "elapsed": elapsed,
        "html": html,
        "fetched_at": fetched_at,
    }
    return zlib.compress(json.dumps(data, ensure_ascii=False).encode("utf-8"), 3)
