"""Records in PostgreSQL: one row per record id, upserted, so a re-delivered task never adds a row.

The main fields get typed columns (indexed: url, domain, published) and the whole record is kept as
``jsonb``. The table is created or migrated when the store opens: migrations are numbered, recorded in
``<table>_migrations``, and applied under a transaction-scoped advisory lock so a fleet of workers
starting at once migrates exactly once. A row is only replaced by a copy fetched at the same time or
later, so a stale re-delivery cannot overwrite a newer recrawl.

A write is durable when it returns (the commit; ``synchronous_commit`` as the server has it). An outage
(connection lost, ``AdminShutdown``, no connection within ``CONNECTION_WAIT``) raises
``StorageUnavailable``, which the pipeline retries; the pool checks a connection before lending it, so the
first write after the server is back does not fail on a dead socket.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ingest_core.errors import StorageUnavailable

CONNECTION_WAIT = 5.0
"""Seconds one write waits for a pooled connection before it counts as an outage (and is retried)."""

CONNECT_TIMEOUT = 5
"""Seconds libpq waits for a new connection to the server."""

log = logging.getLogger(__name__)

_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")

# Each entry is one migration, applied in order, never edited once released: add new ones at the end.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS {t} (
        id text PRIMARY KEY,
        url text NOT NULL,
        final_url text,
        domain text,
        title text,
        author text,
        published timestamptz,
        language text,
        word_count integer,
        content_hash text,
        source text,
        fetched_at timestamptz NOT NULL,
        schema_version integer NOT NULL,
        record jsonb NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS {t_url} ON {t} (url);
    CREATE INDEX IF NOT EXISTS {t_domain} ON {t} (domain);
    CREATE INDEX IF NOT EXISTS {t_published} ON {t} (published);
    """,
]

_COLUMNS = (
    "id",
    "url",
    "final_url",
    "domain",
    "title",
    "author",
    "published",
    "language",
    "word_count",
    "content_hash",
    "source",
    "fetched_at",
    "schema_version",
    "record",
)


@contextmanager
def _outage(what: str) -> Iterator[None]:
    """Connection-level faults (server gone, shut down, pool exhausted) as ``StorageUnavailable``."""
    try:
        yield
    except psycopg.OperationalError as exc:
        detail = f"PostgreSQL {what}: {type(exc).__name__}: {str(exc).strip()[:300]}"
        raise StorageUnavailable(detail=detail) from exc


def _timestamp(value: Any) -> datetime | None:
    """An ISO date or date-time as a datetime (UTC when no zone is given); None when unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # the raw value stays in the jsonb column
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class PostgresStorage:
    """Upsert records into ``table`` through a small connection pool."""

    def __init__(self, url: str, *, table: str = "records", pool_size: int = 4) -> None:
        if not _TABLE_RE.match(table):
            raise ValueError(f"table must match {_TABLE_RE.pattern}, got {table!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.table = table
        self.pool = ConnectionPool(
            url.replace("postgres://", "postgresql://", 1),
            min_size=1,
            max_size=pool_size,
            open=True,
            name=f"ingest-{table}",
            kwargs={"connect_timeout": CONNECT_TIMEOUT},
            check=ConnectionPool.check_connection,
            timeout=CONNECTION_WAIT,
        )
        self._migrated = False
        try:  # (not pool.wait(): a pool that times out there is closed for good)
            self.migrate()
            self._migrated = True
        except psycopg.OperationalError as exc:  # down right now: not a reason to fail the worker's task
            log.warning("PostgreSQL unreachable at open (%s); the table is migrated at the first write", exc)
        t = sql.Identifier(table)
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in _COLUMNS if c != "id"
        )
        self._upsert = sql.SQL(
            "INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT (id) DO UPDATE SET {updates}, "
            "written_at = now() WHERE {t}.fetched_at <= EXCLUDED.fetched_at"
        ).format(
            t=t,
            cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
            vals=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
            updates=updates,
        )

    def migrate(self) -> int:
        """Apply the migrations this table lacks; returns how many ran."""
        t = self.table
        names = {
            "t": sql.Identifier(t),
            "t_url": sql.Identifier(f"{t}_url_idx"),
            "t_domain": sql.Identifier(f"{t}_domain_idx"),
            "t_published": sql.Identifier(f"{t}_published_idx"),
        }
        applied = sql.Identifier(f"{t}_migrations")
        with self.pool.connection() as conn, conn.transaction():
            # one migrator at a time per table, fleet-wide; released at commit
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ingest-migrate:{t}",))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {log} (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(log=applied)
            )
            latest = sql.SQL("SELECT coalesce(max(version), 0) FROM {log}").format(log=applied)
            row = conn.execute(latest).fetchone()
            done = row[0] if row else 0
            for version, statement in enumerate(MIGRATIONS[done:], start=done + 1):
                conn.execute(sql.SQL(statement).format(**names))
                conn.execute(
                    sql.SQL("INSERT INTO {log} (version) VALUES (%s)").format(log=applied), (version,)
                )
        return len(MIGRATIONS) - done

    def write(self, record: dict[str, Any]) -> None:
        """Insert the record, or replace the row with this id unless the row was fetched later."""
        fetched_at = _timestamp(record.get("fetched_at"))
        if fetched_at is None:
            raise ValueError(f"record {record.get('id')!r} has no valid fetched_at")
        values = (
            record["id"],
            record["url"],
            record.get("final_url"),
            record.get("domain"),
            record.get("title"),
            record.get("author"),
            _timestamp(record.get("published")),
            record.get("language"),
            record.get("word_count"),
            record.get("content_hash"),
            record.get("source"),
            fetched_at,
            record.get("schema_version", 1),
            Jsonb(record),
        )
        self._ensure_migrated()
        with _outage("write"), self.pool.connection() as conn:
            conn.execute(self._upsert, values)

    def _ensure_migrated(self) -> None:
        if not self._migrated:
            with _outage("migrate"):
                self.migrate()
            self._migrated = True

    def read(self) -> Iterator[dict[str, Any]]:
        """Every row's record, by id, streamed with a server-side cursor."""
        self._ensure_migrated()
        with _outage("read"), self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(name=f"ingest_read_{self.table}")
            cur.itersize = 1000
            cur.execute(sql.SQL("SELECT record FROM {t} ORDER BY id").format(t=sql.Identifier(self.table)))
            for (record,) in cur:
                yield record

    def count(self) -> int:
        """Rows in the table."""
        self._ensure_migrated()
        with _outage("count"), self.pool.connection() as conn:
            query = sql.SQL("SELECT count(*) FROM {t}").format(t=sql.Identifier(self.table))
            row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the pool (every write is already committed)."""
        self.pool.close()
