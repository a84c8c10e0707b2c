"""Where records go: one small interface, three backends, chosen by ``INGEST_STORAGE_URL``.

- a directory (or ``file://...``): JSONL part files, see ``worker.storage.jsonl``;
- ``postgresql://...``: one row per record id, upserted, see ``worker.storage.postgres``;
- ``s3://bucket/prefix``: batched JSONL objects, see ``worker.storage.s3``.

Delivery is at least once into idempotent sinks, and exactly once where a reader can see it: a task is
acknowledged after its record is written; PostgreSQL upserts by record ``id``; the append-only backends
(JSONL, S3) say where each record went (``write(record, before=...)`` and ``holds(location, id)``), so a
re-delivered task finds its record instead of writing it twice. ``export`` keeps one line per id (the
newest ``fetched_at``) whatever happened. A store that cannot take a write raises
``StorageUnavailable`` (transient: the pipeline retries it, ``worker.storage.retry``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit


@runtime_checkable
class Storage(Protocol):
    """A sink for records that can read them back."""

    def write(self, record: dict[str, Any]) -> Any:
        """Persist one record; durable (or safely spooled) when this returns, else ``StorageUnavailable``."""

    def close(self) -> None:
        """Flush and publish what this process wrote."""

    def read(self) -> Iterator[dict[str, Any]]:
        """Every stored record; append-only backends may yield one id more than once."""


def open_storage(url: str, **opts: Any) -> Storage:
    """The backend named by ``url``; ``opts`` are that backend's constructor keywords (unknown ones ignored).

    Recognised options: ``rotate_bytes``, ``rotate_seconds``, ``compress``, ``fsync`` (JSONL, S3),
    ``table``, ``pool_size`` (PostgreSQL), ``spool_dir``, ``endpoint_url`` (S3).
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("", "file"):
        from worker.storage.jsonl import JsonlStore

        path = url.removeprefix("file://")
        return JsonlStore(path, **_pick(opts, "rotate_bytes", "rotate_seconds", "compress", "fsync"))
    if scheme in ("postgres", "postgresql"):
        from worker.storage.postgres import PostgresStorage

        return PostgresStorage(url, **_pick(opts, "table", "pool_size"))
    if scheme == "s3":
        from worker.storage.s3 import S3Storage

        return S3Storage(
            url,
            **_pick(opts, "rotate_bytes", "rotate_seconds", "compress", "fsync", "spool_dir", "endpoint_url"),
        )
    raise ValueError(f"unsupported storage URL {url!r}: expected a directory, postgresql:// or s3://")


def _pick(opts: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k in names and v is not None}


def latest_by_id(storage: Storage) -> Iterator[dict[str, Any]]:
    """Each record id once: the copy with the newest ``fetched_at``.

    Two passes over ``storage.read()`` so memory holds one small entry per id, not the records; the
    second pass matches on (id, fetched_at), so parts published in between change nothing. Two copies
    with one id and one ``fetched_at`` come from one fetch (a re-delivered process task): either will do.
    """
    best: dict[str, str] = {}
    for record in storage.read():
        rid, at = record["id"], record.get("fetched_at") or ""
        if best.get(rid, "") <= at:
            best[rid] = at
    for record in storage.read():
        rid = record["id"]
        if rid in best and best[rid] == (record.get("fetched_at") or ""):
            del best[rid]
            yield record


def read_problems(storage: Storage) -> list[str]:
    """Torn or unreadable lines the last reads of ``storage`` skipped (JSONL and S3 report them)."""
    return list(getattr(storage, "problems", []))


def export(storage: Storage, out: IO[str]) -> int:
    """Write one JSON line per record id to ``out``; returns the number of lines.

    A torn or unreadable line in a part is skipped, not fatal: ``read_problems(storage)`` lists them.
    """
    n = 0
    for record in latest_by_id(storage):
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n
