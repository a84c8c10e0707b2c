"""Redis faults are outages: a full Redis (maxmemory, noeviction) and a restart under held messages.

Real processes only: a private append-only Redis, a fetch worker (threads) and a process worker (prefork)
started as operators start them, URLs in with ``ingest submit``, outcomes read with ``ingest stats --json``.
Neither fault may make a worker exit (nothing would restart it), and every URL must end terminal.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import REPO, ingest
from tests.reliability._harness import AppendOnlyRedis, CeleryWorker, FlakySite

OOM_SECONDS = 8.0
"""How long Redis stays full before maxmemory is raised."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[AppendOnlyRedis]:
    """A private append-only Redis for one test (so filling or restarting it hurts nobody else)."""
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
            "INGEST_KEY_PREFIX": f"rf{uuid.uuid4().hex[:6]}",
            "INGEST_RETRY_BACKOFF": "0.2",
            "INGEST_HOST_INTERVAL": "0",
            # a URL whose fetch message the fault lost is leased again after this (the frontier's recovery)
            "INGEST_FETCH_LEASE": "15",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def _stats(env: dict[str, str], batch: str) -> dict:
    return json.loads(ingest("stats", "--json", "--batch", batch, env=env, timeout=60).stdout)


def _oom_errors(client: redis.Redis) -> int:
    """Commands Redis refused with OOM so far (INFO errorstats, Redis 6.2+)."""
    return int(client.info("errorstats").get("errorstat_OOM", {}).get("count", 0))


def _workers(env: dict[str, str], tmp_path: Path) -> list[CeleryWorker]:
    logs = tmp_path / "logs"
    return [
        CeleryWorker("fetch", env, logs, pool="threads", concurrency=8, queues="fetch").start(),
        CeleryWorker("process", env, logs, pool="prefork", concurrency=2, queues="process").start(),
    ]


def _wait_all_terminal(env: dict[str, str], batch: str, workers: list[CeleryWorker], limit: float) -> dict:
    deadline = time.monotonic() + limit
    while True:
        s = _stats(env, batch)
        if s["pending"] == 0:
            return s
        for w in workers:
            w.supervise()  # what systemd would do; counted, and the test allows none
        assert time.monotonic() < deadline, f"not all terminal after {limit:.0f}s: {s}"
        time.sleep(0.5)


def test_redis_at_maxmemory_is_ridden_out_and_every_url_ends(broker, tmp_path, capsys) -> None:  # noqa: ANN001
    """Redis full (maxmemory, noeviction) mid-run, raised 8 s later: no worker exits and every URL ends
    terminal, stored once."""
    env = _env(broker, tmp_path)
    client = redis.Redis.from_url(broker.url)
    workers = _workers(env, tmp_path)
    try:
        with FlakySite() as site:
            urls = [f"{site.base}/s/{n}" if n % 5 == 0 else f"{site.base}/a/{n}" for n in range(200)]
            batch = json.loads(ingest("submit", *urls, "--json", env=env).stdout)["batch"]
            deadline = time.monotonic() + 60
            while _stats(env, batch)["stored"] < 20:
                assert time.monotonic() < deadline, "no progress before the fault"
                time.sleep(0.2)
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", str(used + 32 * 1024))
            full_at = time.monotonic()
            while time.monotonic() - full_at < OOM_SECONDS:
                for w in workers:
                    w.supervise()
                time.sleep(0.2)
            refused = _oom_errors(client)
            client.config_set("maxmemory", "0")
            recovered_at = time.monotonic()
            s = _wait_all_terminal(env, batch, workers, limit=120)
            took = time.monotonic() - recovered_at
        with capsys.disabled():
            print(
                f"\nOOM figures: {refused} commands refused in {OOM_SECONDS:g}s full; {s['stored']} stored, "
                f"{s['duplicate']} duplicate, {s['failed']} failed of {s['submitted']}; "
                f"all terminal {took:.1f}s after maxmemory was raised; "
                f"worker exits: {[w.crashes for w in workers]}"
            )
        assert refused > 0, "Redis never refused a command: the fault was not injected"
        assert [w.crashes for w in workers] == [0, 0], [w.log()[-3000:] for w in workers]
        assert all(w.alive() for w in workers)
        assert (s["submitted"], s["pending"], s["failed"]) == (200, 0, 0), s
        assert s["stored"] + s["duplicate"] == 200
    finally:
        for w in workers:
            w.stop(timeout=30)


def test_redis_restart_while_a_fetch_worker_holds_messages_crashes_nothing(broker, tmp_path, capsys) -> None:  # noqa: ANN001
    """Redis killed and restarted while the fetch worker holds unacknowledged messages (slow pages, idle
    threads waiting on the queue): no worker exits (the kombu restore crash), and every URL ends terminal."""
    env = _env(broker, tmp_path)
    workers = _workers(env, tmp_path)
    try:
        with FlakySite() as site:
            urls = [f"{site.base}/s/{n}" for n in range(40)]
            batch = json.loads(ingest("submit", *urls, "--json", env=env).stdout)["batch"]
            deadline = time.monotonic() + 60
            while _stats(env, batch)["stored"] < 3:
                assert time.monotonic() < deadline, "no progress before the fault"
                time.sleep(0.2)
            broker.crash()
            time.sleep(3)
            broker.start()
            restarted_at = time.monotonic()
            s = _wait_all_terminal(env, batch, workers, limit=180)
            took = time.monotonic() - restarted_at
        logs = "".join(w.log() for w in workers)
        with capsys.disabled():
            print(
                f"\nrestart figures: {s['stored']} stored, {s['duplicate']} duplicate, "
                f"{s['failed']} failed of {s['submitted']}; all terminal {took:.1f}s after the restart; "
                f"worker exits: {[w.crashes for w in workers]}"
            )
        assert "Connection to broker lost" in logs  # the fault reached the workers
        assert "has no attribute 'hostname'" not in logs
        assert [w.crashes for w in workers] == [0, 0], logs[-3000:]
        assert (s["submitted"], s["pending"], s["failed"]) == (40, 0, 0), s
    finally:
        for w in workers:
            w.stop(timeout=30)
