"""Storage faults with real workers, driven through the ``ingest`` CLI: a process worker SIGKILLed between a
write and its terminal state and restarted under another hostname, a disk that fills, PostgreSQL and S3
outages. Each run prints its figures (``pytest -s``; CI logs keep them) for ``docs/reliability.md``."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ingest_core.canonical import canonicalize, url_id
from tests.reliability._harness import AppendOnlyRedis, FlakySite
from tests.reliability._storage_harness import (
    STALL_DIR,
    IngestWorker,
    export_ids,
    need_root,
    raw_ids,
    stats,
    storage_env,
    submit,
    wait_for,
)
from worker.storage.jsonl import INPROGRESS


@pytest.fixture
def broker(tmp_path: Path):
    """A private append-only Redis (broker and state) for one test."""
    server = AppendOnlyRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def _figures(capsys: pytest.CaptureFixture[str], name: str, **figures: object) -> None:
    with capsys.disabled():
        print(f"\n{name} figures:\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()), flush=True)


def _done(env: dict[str, str], n: int) -> dict | None:
    s = stats(env)
    return s if s["submitted"] == n and s["pending"] == 0 else None


def test_process_worker_killed_between_write_and_finish_restarted_under_another_hostname(
    broker, tmp_path, capsys
):
    """kill -9 of a worker in its own UTS namespace while a record is written but not yet counted, restarted
    under another hostname: its parts are published, stored == exported, every id once in the raw parts."""
    need_root("a UTS namespace")
    stall = tmp_path / "stall"
    stall.mkdir()
    records = tmp_path / "records"
    env = storage_env(
        broker, tmp_path, str(records),
        INGEST_ROTATE_SECONDS="3600",  # parts stay open until the kill: only ownership by lock saves them
        INGEST_TEST_STALL_DIR=str(stall),
        # a started task holds its URL while its lease is renewed; the killed worker's leases run out after
        # this long, then the frontier sends those URLs again (the default is 120 s)
        INGEST_PROCESS_LEASE="20",
        INGEST_FETCH_LEASE="20",
    )  # fmt: skip
    env["PYTHONPATH"] = f"{STALL_DIR}{os.pathsep}{env['PYTHONPATH']}"
    n = 30
    first = IngestWorker(env, tmp_path / "first.log", hostname="ingest-box-a").start()
    second = IngestWorker(env, tmp_path / "second.log", hostname="ingest-box-b")
    try:
        with FlakySite() as site:
            urls = [f"{site.base}/a/{i}" for i in range(n)]
            # the last ten URLs stop between their write and their terminal state
            (stall / "armed").write_text("\n".join(url_id(canonicalize(u)) for u in urls[20:]) + "\n")
            submit(env, urls)
            stalled = wait_for(lambda: sorted(stall.glob("stalled-*")), "a write waiting for its finish", 180)
            wait_for(lambda: stats(env)["stored"] >= 10, "10 URLs stored before the kill", 180)
            first.kill()
            (stall / "armed").unlink()
            stalled_id = stalled[0].name.rsplit("-", 1)[1]
            open_parts = list(records.rglob(f"*{INPROGRESS}"))
            assert open_parts and all("ingest_box_a" in p.name for p in open_parts), open_parts
            assert any(stalled_id in p.read_text() for p in open_parts)  # written, not counted
            at_kill = stats(env)
            t0 = time.monotonic()
            second.start()
            final = wait_for(lambda: _done(env, n), "every URL terminal after the restart", 300, every=1)
            recovered = time.monotonic() - t0
        second.stop()
        exported, _ = export_ids(env, tmp_path)
        raw = raw_ids(records)
        expected = {url_id(canonicalize(u)) for u in urls}
        _figures(
            capsys, "kill -9 between write and finish",
            urls=n, stored_at_kill=at_kill["stored"], stalled_ids=len(stalled),
            stored=final["stored"], duplicate=final["duplicate"], failed=final["failed"],
            exported=len(exported), raw_lines=sum(raw.values()),
            ids_twice=sum(1 for c in raw.values() if c > 1), seconds_to_recover=round(recovered, 1),
        )  # fmt: skip
        assert (final["stored"], final["failed"], final["pending"]) == (n, 0, 0), final
        assert sorted(exported) == sorted(expected)
        assert set(raw) == expected and all(c == 1 for c in raw.values()), raw.most_common(3)
        assert raw[stalled_id] == 1
        assert not list(records.rglob(f"*{INPROGRESS}"))
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 1 MiB tmpfs under the test's tmp dir, unmounted afterwards."""
    need_root("a tmpfs mount")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_that_fills_mid_run_loses_nothing_and_publishes_no_torn_line(
    broker, tmp_path, small_disk, capsys
):
    """Records go to a tmpfs with room for a few pages: writes wait (no failed URL) while it is full, and
    once space is freed every page is stored exactly once, with no manual retry and no torn line."""
    records = small_disk / "records"
    env = storage_env(broker, tmp_path, str(records))
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:  # leave about 40 KiB: a dozen records
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        fh.write(b"\0" * (free - 40 * 1024))
    n = 60
    worker = IngestWorker(env, tmp_path / "worker.log").start()
    try:
        with FlakySite() as site:
            urls = [f"{site.base}/a/{i}" for i in range(n)]
            submit(env, urls)
            wait_for(
                lambda: "storage unavailable" in worker.log() or stats(env)["failed"],
                "a write refused by the full disk", 180,
            )  # fmt: skip
            at_full = stats(env)
            assert at_full["pending"] > 0 and at_full["failed"] == 0, at_full
            filler.unlink()
            t0 = time.monotonic()
            final = wait_for(lambda: _done(env, n), "every URL terminal once space is back", 300, every=1)
            recovered = time.monotonic() - t0
        worker.stop()
        exported, err = export_ids(env, tmp_path)
        raw = raw_ids(records)
        _figures(
            capsys, "full disk",
            urls=n, stored_when_full=at_full["stored"], stored=final["stored"], failed=final["failed"],
            exported=len(exported), raw_lines=sum(raw.values()), seconds_to_recover=round(recovered, 1),
            ENOSPC_retries_logged=worker.log().count("storage unavailable"),
        )  # fmt: skip
        assert (final["stored"], final["failed"], final["pending"]) == (n, 0, 0), final
        assert sorted(exported) == sorted(url_id(canonicalize(u)) for u in urls)
        assert set(raw) == set(exported) and all(c == 1 for c in raw.values())
        assert "torn" not in err and "unreadable" not in err
    finally:
        worker.stop()


PG_ADMIN_URL = os.environ.get(
    "INGEST_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""A PostgreSQL role that may create databases; the test makes (and drops) its own database there."""

PG_OUTAGE_SECONDS = 20.0
"""How long the records database refuses connections mid-run."""


@pytest.fixture
def outage_db():
    """A private database ``ingest_outage_<random>`` (never the shared one), dropped afterwards."""
    import psycopg  # a core dependency: never a skip

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("INGEST_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}")
    name = f"ingest_outage_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield admin, name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def psycopg_connect(url: str):
    import psycopg

    return psycopg.connect(url, connect_timeout=5)


def test_postgres_unavailable_for_20_s_every_page_stored_once_without_retry(
    broker, tmp_path, outage_db, capsys
):
    """The records database refuses connections and its backends are terminated for 20 s mid-run: writes
    wait and go through when it is back; no URL failed, every page is one row."""
    admin, name, db_url = outage_db
    env = storage_env(broker, tmp_path, db_url)
    n = 150
    worker = IngestWorker(env, tmp_path / "worker.log").start()
    try:
        with FlakySite() as site:
            urls = [f"{site.base}/a/{i}" for i in range(n)]
            submit(env, urls)
            wait_for(lambda: stats(env)["stored"] >= 5, "5 URLs stored before the outage", 180)
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            at_outage = stats(env)
            time.sleep(PG_OUTAGE_SECONDS)  # the fault's length, not a wait for a result
            during = stats(env)
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            t0 = time.monotonic()
            final = wait_for(lambda: _done(env, n), "every URL terminal after the outage", 300, every=1)
            recovered = time.monotonic() - t0
        worker.stop()
        exported, _ = export_ids(env, tmp_path)
        with psycopg_connect(db_url) as conn:
            (rows,) = conn.execute("SELECT count(*) FROM records").fetchone()
        _figures(
            capsys, "PostgreSQL outage",
            urls=n, stored_at_outage=at_outage["stored"], stored_after_20s_down=during["stored"],
            stored=final["stored"], failed=final["failed"], failed_reasons=final["failed_reasons"],
            exported=len(exported), rows=rows, seconds_to_recover=round(recovered, 1),
            storage_retries_logged=worker.log().count("storage unavailable"),
        )  # fmt: skip
        assert rows == n
        assert during["pending"] > 0, "the outage ended before any write met it"
        assert "storage unavailable" in worker.log()
        assert (final["stored"], final["failed"], final["pending"]) == (n, 0, 0), final
        assert sorted(exported) == sorted(url_id(canonicalize(u)) for u in urls)
    finally:
        worker.stop()


@pytest.fixture
def moto(tmp_path: Path):
    """moto's S3 server on a fixed loopback port, which the test can stop and start again (state kept)."""
    from moto.server import ThreadedMotoServer

    from ingest_core.embedded import free_port

    port = free_port()
    holder = {"server": ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)}
    holder["server"].start()

    def stop() -> None:
        holder["server"].stop()

    def start() -> None:
        holder["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        holder["server"].start()

    yield f"http://127.0.0.1:{port}", stop, start
    holder["server"].stop()


def test_s3_stopped_and_restarted_every_record_uploaded_once_with_no_new_write(
    broker, tmp_path, moto, capsys
):
    """S3 goes away mid-run: records wait in the spool (stored, durable), and once S3 is back the spool is
    uploaded by itself (no further write, no restart), every record id once in the objects."""
    import boto3

    endpoint, stop_s3, start_s3 = moto
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    env = storage_env(broker, tmp_path, f"s3://{bucket}/news", INGEST_ROTATE_SECONDS="1", **aws)
    spool = tmp_path / "data" / "spool"

    def object_ids() -> Counter[str]:
        ids: Counter[str] = Counter()
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            ids.update(json.loads(line)["id"] for line in body.splitlines())
        return ids

    worker = IngestWorker(env, tmp_path / "worker.log").start()
    try:
        with FlakySite() as site:
            before = [f"{site.base}/a/{i}" for i in range(10)]
            after = [f"{site.base}/a/{i}" for i in range(10, 40)]
            submit(env, before)
            wait_for(lambda: _done(env, 10), "the first 10 URLs stored", 180)
            stop_s3()
            submit(env, after)
            down = wait_for(lambda: _done(env, 40), "all 40 URLs stored while S3 is down", 180)
            waiting = wait_for(
                lambda: [p for p in spool.rglob("*.jsonl") if p.is_file()], "parts waiting in the spool", 60
            )

            # every part published and its upload failed (no attempt still under way), none open: from here
            # on only a retry of our own can upload them, no new write will
            def settled() -> bool:
                failures = [line for line in worker.log().splitlines() if "kept in spool" in line]
                parts = [p for p in spool.rglob("part-*") if p.is_file()]
                return bool(parts) and all(
                    not p.name.endswith(INPROGRESS) and any(p.name in line for line in failures)
                    for p in parts
                )

            wait_for(settled, "every spooled part published and its upload failed", 120)
            start_s3()
            t0 = time.monotonic()
            expected = {url_id(canonicalize(u)) for u in before + after}
            wait_for(lambda: set(object_ids()) == expected, "every record uploaded after S3 is back", 180, 1)
            recovered = time.monotonic() - t0
        worker.stop()
        ids = object_ids()
        exported, _ = export_ids(env, tmp_path)
        _figures(
            capsys, "S3 outage",
            urls=40, stored=down["stored"], failed=down["failed"], parts_waiting_in_spool=len(waiting),
            objects_ids=len(ids), exported=len(exported), seconds_to_upload_after_restart=round(recovered, 1),
        )  # fmt: skip
        assert (down["stored"], down["failed"]) == (40, 0), down
        assert set(ids) == expected and all(c == 1 for c in ids.values()), ids.most_common(3)
        assert sorted(exported) == sorted(expected)
        assert not [p for p in spool.rglob("part-*") if p.is_file()]
    finally:
        worker.stop()
