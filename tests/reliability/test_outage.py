"""Broker outage: Redis (broker and state) down, then back, with real workers and the real CLI."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
import redis

from ingest_core.state import StateStore, summarize
from tests.conftest import REPO, ingest
from tests.reliability._harness import AppendOnlyRedis, CeleryWorker, FlakySite

OUTAGE_SECONDS = 5.0
"""How long Redis stays down mid-run: longer than redis-py's own reconnect retries."""


@pytest.fixture
def broker(tmp_path: Path):
    """A private append-only Redis for one test (so taking it down hurts nobody else)."""
    server = AppendOnlyRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def _env(broker: AppendOnlyRedis, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            "INGEST_BROKER_URL": broker.url,
            "INGEST_STORAGE_URL": str(tmp_path / "records"),
            "INGEST_DATA_DIR": str(tmp_path / "data"),
            "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
            "INGEST_KEY_PREFIX": f"out{uuid.uuid4().hex[:6]}",
            "INGEST_VISIBILITY_TIMEOUT": "20",
            # a message the broker lost in the crash comes back when its frontier lease runs out
            "INGEST_FETCH_LEASE": "20",
            "INGEST_PROCESS_LEASE": "20",
            "INGEST_RETRY_BACKOFF": "0.2",
            "INGEST_HOST_INTERVAL": "0",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def test_submit_with_redis_down_exits_nonzero_and_queues_nothing(broker, tmp_path):
    """With Redis down, submit exits non-zero saying so; once Redis is back nothing was queued or claimed."""
    env = _env(broker, tmp_path)
    broker.crash()
    urls = [f"http://127.0.0.1:9/a/{n}" for n in range(20)]
    proc = ingest("submit", *urls, env=env, check=False, timeout=60)
    assert proc.returncode != 0
    assert "unreachable" in proc.stderr and broker.url.split("://")[1].split("/")[0] in proc.stderr
    assert "Traceback" not in proc.stderr
    broker.start()
    r = redis.Redis.from_url(broker.url)
    assert (r.llen("fetch"), r.llen("process"), r.hlen("unacked")) == (0, 0, 0)
    assert r.keys(env["INGEST_KEY_PREFIX"] + ":*") == []


def test_workers_reconnect_after_redis_outage_and_the_run_completes(broker, tmp_path, capsys):
    """Redis killed mid-run and back 5 s later: the workers reconnect and every URL ends once.

    The worker runs as under systemd's Restart=always: Celery 5.7 sometimes exits in its reconnect path
    (kombu ``restore_unacked`` on the dead channel raises AttributeError); such exits are printed.
    """
    env = _env(broker, tmp_path)
    worker = CeleryWorker("w1", env, tmp_path / "logs", pool="threads", concurrency=4).start()
    state = StateStore(redis.Redis.from_url(broker.url, socket_timeout=5), prefix=env["INGEST_KEY_PREFIX"])
    try:
        with FlakySite() as site:
            urls = [f"{site.base}/s/{n}" if n % 10 == 0 else f"{site.base}/a/{n}" for n in range(150)]
            out = json.loads(ingest("submit", *urls, "--json", env=env).stdout)
            deadline = time.monotonic() + 20
            while summarize(state.counters(out["batch"]))["pending"] > 120:
                assert time.monotonic() < deadline, "workers made no progress before the outage"
                time.sleep(0.1)
            broker.crash()
            time.sleep(OUTAGE_SECONDS)
            broker.start()
            deadline = time.monotonic() + 90
            while True:
                s = summarize(state.counters(out["batch"]))
                backlog = (state.r.llen("fetch"), state.r.llen("process"), state.r.hlen("unacked"))
                if s["pending"] == 0 and backlog == (0, 0, 0):
                    break
                assert time.monotonic() < deadline, f"run did not complete after the outage: {s} {backlog}"
                worker.supervise()
                time.sleep(0.3)
        with capsys.disabled():
            print(
                f"\noutage figures: {s['stored']} stored of {s['submitted']} after {OUTAGE_SECONDS} s down; "
                f"worker exits on its own (restarted): {worker.crashes}"
            )
        assert worker.alive()
        assert (s["submitted"], s["stored"], s["pending"]) == (150, 150, 0)
        assert "Connection to broker lost" in worker.log()
    finally:
        worker.stop(timeout=20)
