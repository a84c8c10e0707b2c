import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.worker.storage.conftest import make_record
from worker.storage import export, open_storage
from worker.storage.postgres import MIGRATIONS, PostgresStorage


def test_table_is_created_with_typed_columns_and_indexes(postgres_url, pg_table):
    """Opening the store creates the table (typed columns + jsonb) and indexes on url, domain, published."""
    PostgresStorage(postgres_url, table=pg_table).close()
    with psycopg.connect(postgres_url) as conn:
        cols = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
                (pg_table,),
            ).fetchall()
        )
        indexes = {
            r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (pg_table,))
        }
    assert cols["record"] == "jsonb"
    assert cols["published"] == cols["fetched_at"] == "timestamp with time zone"
    assert cols["word_count"] == "integer"
    for column in ("url", "domain", "published"):
        assert any(f"({column})" in d for d in indexes), column


def test_stores_opening_at_once_migrate_exactly_once(postgres_url, pg_table):
    """Eight workers opening the store together apply each migration once."""
    with ThreadPoolExecutor(8) as pool:
        stores = list(
            pool.map(lambda _: PostgresStorage(postgres_url, table=pg_table, pool_size=1), range(8))
        )
    for s in stores:
        s.close()
    with psycopg.connect(postgres_url) as conn:
        versions = [r[0] for r in conn.execute(f"SELECT version FROM {pg_table}_migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_same_record_twice_leaves_one_row(postgres_url, pg_table):
    """At-least-once: writing one record id twice (a re-delivered task) upserts into one row."""
    store = open_storage(postgres_url, table=pg_table)
    store.write(make_record(1))
    store.write(make_record(2))
    store.write(make_record(1))
    assert store.count() == 2
    out = io.StringIO()
    assert export(store, out) == 2
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [f"{1:032x}", f"{2:032x}"]
    store.close()


def test_recrawl_replaces_row_but_stale_copy_does_not(postgres_url, pg_table):
    """A newer fetch of an id replaces its row; a late re-delivery of an older fetch leaves it alone."""
    store = PostgresStorage(postgres_url, table=pg_table)
    store.write(make_record(1, fetched_at="2026-03-01T08:00:00Z", title="first"))
    store.write(make_record(1, fetched_at="2026-03-05T08:00:00Z", title="recrawl"))
    store.write(make_record(1, fetched_at="2026-03-01T08:00:00Z", title="first"))
    assert [r["title"] for r in store.read()] == ["recrawl"]
    store.close()


def test_unparseable_published_date_is_null_but_kept_in_jsonb(postgres_url, pg_table):
    """A published value that is not a date leaves the typed column NULL and the raw value in the record."""
    store = PostgresStorage(postgres_url, table=pg_table)
    record = make_record(3)
    record["published"] = "last tuesday"
    store.write(record)
    store.close()
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(f"SELECT published, record->>'published' FROM {pg_table}").fetchone()
    assert row == (None, "last tuesday")


def test_write_after_the_servers_side_of_the_connection_was_terminated_goes_through(postgres_url, pg_table):
    """The pool checks a connection before lending it: a backend killed server-side (a restart, an admin's
    pg_terminate_backend) costs the next write nothing."""
    store = PostgresStorage(postgres_url, table=pg_table, pool_size=1)
    store.write(make_record(1))
    with store.pool.connection() as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    store.write(make_record(2))
    assert store.count() == 2
    store.close()


def test_database_refusing_connections_is_storage_unavailable(postgres_url, pg_table):
    """No server at all (a closed port): a write raises StorageUnavailable (transient), not a crash."""
    from ingest_core.embedded import free_port
    from ingest_core.errors import StorageUnavailable

    store = PostgresStorage(postgres_url, table=pg_table, pool_size=1)
    store.write(make_record(1))
    store.pool.close()
    store.pool = type(store.pool)(
        f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=1, max_size=1, open=True, timeout=1
    )
    with pytest.raises(StorageUnavailable) as caught:
        store.write(make_record(2))
    assert caught.value.reason == "storage_unavailable" and "PostgreSQL write" in caught.value.detail
    store.pool.close()


def test_store_opened_while_the_database_is_down_migrates_at_its_first_write(postgres_url):
    """Opening the store while its database refuses connections does not fail: the first write raises
    StorageUnavailable (retried by the pipeline), and once the database is back it creates the table and
    stores the record."""
    from ingest_core.errors import StorageUnavailable

    server = postgres_url.rsplit("/", 1)[0]
    name = f"ingest_open_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            store = PostgresStorage(f"{server}/{name}", pool_size=1)
            with pytest.raises(StorageUnavailable):
                store.write(make_record(1))
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            deadline = time.monotonic() + 120
            while True:  # the pool reconnects with its own backoff
                try:
                    store.write(make_record(1))
                    break
                except StorageUnavailable:
                    assert time.monotonic() < deadline, "the store never came back"
                    time.sleep(0.5)
            assert store.count() == 1
            store.close()
        finally:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
