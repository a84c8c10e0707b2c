"""Storage backends behind real Celery workers: records written by the fleet, read back by export."""

import json

import psycopg

from ingest_core.state import StateStore
from tests.conftest import Workers, ingest
from tests.worker.ops.conftest import wait_terminal


def _run(env, urls, state, *flags):
    out = json.loads(ingest("submit", *urls, "--json", *flags, env=env).stdout)
    return wait_terminal(state, out["batch"])


def test_rerunning_urls_into_postgres_leaves_the_row_count_unchanged(
    ingest_env, postgres_url, pg_table, page_server, tmp_path
):
    """Five URLs stored, then forced through again: still five rows, and export writes five lines."""
    env = {**ingest_env, "INGEST_STORAGE_URL": postgres_url, "INGEST_STORAGE_TABLE": pg_table}
    state = StateStore.from_url(env["INGEST_BROKER_URL"], prefix=env["INGEST_KEY_PREFIX"])
    urls = [f"{page_server}/articles/story-{n}.html" for n in range(10, 15)]
    workers = Workers(env, tmp_path / "workers.log")
    try:
        assert _run(env, urls, state)["stored"] == 5
        assert _run(env, urls, state, "--force")["stored"] == 5
    finally:
        workers.stop()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT count(*), count(DISTINCT url) FROM {pg_table}").fetchone() == (5, 5)
    ingest("export", "--to", str(tmp_path / "out.jsonl"), env=env)
    exported = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["url"] for r in exported) == sorted(urls)


def test_fleet_records_reach_s3_and_export_reads_them_back(
    ingest_env, s3_env, s3_bucket, page_server, tmp_path
):
    """Workers on an s3:// storage URL upload their batches (at the latest on shutdown); export reads them."""
    env = {
        **ingest_env,
        **s3_env,
        "INGEST_STORAGE_URL": f"s3://{s3_bucket}/fleet",
        "INGEST_ROTATE_SECONDS": "300",
    }
    state = StateStore.from_url(env["INGEST_BROKER_URL"], prefix=env["INGEST_KEY_PREFIX"])
    urls = [f"{page_server}/articles/story-{n}.html" for n in range(20, 23)]
    workers = Workers(env, tmp_path / "workers.log")
    try:
        assert _run(env, urls, state)["stored"] == 3
    finally:
        workers.stop()  # warm shutdown publishes and uploads the open batch
    ingest("export", "--to", str(tmp_path / "out.jsonl"), env=env)
    exported = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["url"] for r in exported) == sorted(urls)
