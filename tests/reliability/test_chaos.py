"""Chaos: 1,000 URLs from a flaky site through three workers while one is SIGKILLed and Redis crashes.

Figures are printed (``pytest -s`` shows them; CI logs keep them). The loss figure we publish is the number
of URLs left pending with no message anywhere in the broker. Our side loses none: every finish is retried
through a Redis outage and every task waits for its state to be recorded before it is acked. Kombu's Redis
transport can: BRPOP removes a message before the worker records it in ``unacked``, and a reply that
arrives while the worker's prefetch is full is held unread in the socket ("paused") and dropped when the
connection is (celery/kombu#305, celery/celery#7950). Over eight runs we saw 0, 0, 0, 1, 1, 1, 1 and 2
such URLs, lost both at the worker SIGKILL and at the Redis restart (the AOF loaded intact each time).
The frontier closes that window on our side: every dispatched URL holds a lease, and one whose task was
lost is dispatched again when the lease runs out (``INGEST_FETCH_LEASE`` / ``INGEST_PROCESS_LEASE``; an
unstarted task only while its queue is empty). So the test allows no loss at all, and prints how many
leases ran out.

Workers run as under a supervisor (restarted when they exit on their own): on a Redis restart a Celery 5.7
worker can die in its reconnect path (``AttributeError: 'NoneType' object has no attribute 'hostname'`` in
kombu's ``restore_unacked`` while closing the dead channel). Such exits are counted and printed.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

from ingest_core.canonical import canonicalize, url_id
from ingest_core.state import StateStore, summarize
from tests.conftest import REPO, ingest
from tests.reliability._harness import AppendOnlyRedis, CeleryWorker, FlakySite
from worker.pipeline.store import JsonlStore, read_records

N_URLS = 1000
"""URL lines submitted (some repeat)."""

VISIBILITY_TIMEOUT = 20
"""Seconds before the broker re-delivers the killed worker's unacked tasks."""

RUN_DEADLINE = 270.0
"""Seconds the whole run may take from submission to every URL terminal and every task acked."""

LEASE = 30
"""Seconds a dispatched or fetched URL's task may stay lost (a killed worker, a message the broker dropped)
before the frontier sends it again."""

SETTLED_AFTER = 80 + 30.0
"""Seconds with an empty broker and no progress after which a pending URL would be lost for good."""

MAX_BROKER_LOSS = 0
"""URLs that may end with no terminal state: none (the sweeper re-sends what the broker lost)."""


def chaos_plan(base: str) -> tuple[list[str], dict[str, int]]:
    """The URL lines and the terminal counts they must end in, whatever happens to the fleet.

    Per 20 lines: one 503 once then fine, one 503 for ever (10% 5xx), one reset once (5%), one slow body
    (5%), one page whose text another URL already has, one URL repeated, fourteen plain articles.
    """
    urls: list[str] = []
    for i in range(N_URLS):
        k = i % 20
        if k == 0:
            urls.append(f"{base}/e/{i}?k=1")
        elif k == 1:
            urls.append(f"{base}/e/{i}?k=99")
        elif k == 2:
            urls.append(f"{base}/r/{i}?k=1")
        elif k == 3:
            urls.append(f"{base}/s/{i}")
        elif k == 4:
            urls.append(f"{base}/d/{i - 4}")  # the text of line i-4
        elif k == 5:
            urls.append(urls[i - 5])  # the URL of line i-5 again
        else:
            urls.append(f"{base}/a/{i}")
    blocks = N_URLS // 20
    expected = {"stored": 17 * blocks, "duplicate": 2 * blocks, "skipped": 0, "failed": blocks}
    return urls, expected


def _counters(state: StateStore, batch: str) -> dict | None:
    try:
        return summarize(state.counters(batch))
    except redis.RedisError:
        return None  # Redis is down right now


def _wait_done_at_least(state: StateStore, batch: str, n: int, deadline: float) -> dict:
    while True:
        s = _counters(state, batch)
        if s and s["submitted"] and s["submitted"] - s["pending"] >= n:
            return s
        if time.monotonic() > deadline:
            pending = [k.hex() for k, v in state.r.hgetall(state.key("urls")).items() if v[:1] == b"q"]
            raise AssertionError(f"stuck before {n} URLs were terminal: {s}; pending ids {pending[:20]}")
        time.sleep(0.2)


def _supervise(fleet: list[CeleryWorker], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        for w in fleet:
            w.supervise()


def _when(t0: float, s: dict) -> str:
    return f"{time.monotonic() - t0:.1f} s, {s['submitted'] - s['pending']} URLs terminal"


def _broker_backlog(r: redis.Redis) -> dict[str, int]:
    return {"fetch": r.llen("fetch"), "process": r.llen("process"), "unacked": r.hlen("unacked")}


def _wait_settled(state: StateStore, batch: str, deadline: float) -> dict:
    """Until every URL is terminal and the broker is empty, or the broker is empty and nothing has moved
    for ``SETTLED_AFTER`` seconds (what is pending then has no message left)."""
    empty = {"fetch": 0, "process": 0, "unacked": 0}
    last, since = -1, time.monotonic()
    while True:
        s = summarize(state.counters(batch))
        backlog = _broker_backlog(state.r)
        if backlog == empty and (s["pending"] == 0 or time.monotonic() - since > SETTLED_AFTER):
            return s
        if s["pending"] != last or backlog != empty:
            last, since = s["pending"], time.monotonic()
        assert time.monotonic() < deadline, f"not settled: {s}, broker {backlog}"
        time.sleep(0.5)


def test_every_url_ends_once_when_a_worker_is_killed_and_redis_crashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 flaky URLs, one worker SIGKILLed and restarted, Redis SIGKILLed and restarted: nothing lost."""
    t0 = time.monotonic()
    broker = AppendOnlyRedis(tmp_path / "redis").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            "INGEST_BROKER_URL": broker.url,
            "INGEST_STORAGE_URL": str(tmp_path / "records"),
            "INGEST_DATA_DIR": str(tmp_path / "data"),
            "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
            "INGEST_KEY_PREFIX": f"chaos{uuid.uuid4().hex[:6]}",
            "INGEST_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            # a lost task's URL is dispatched again once its lease runs out (running process tasks hold
            # theirs for extract timeout + storage retries + 60 s: 80 s here)
            "INGEST_FETCH_LEASE": str(LEASE),
            "INGEST_PROCESS_LEASE": str(LEASE),
            "INGEST_EXTRACT_TIMEOUT": "10",
            "INGEST_STORAGE_RETRY_MAX": "10",
            "INGEST_RETRY_BACKOFF": "0.2",
            "INGEST_RETRY_BACKOFF_MAX": "2",
            "INGEST_ROTATE_SECONDS": "2",
            "INGEST_HOST_INTERVAL": "0",  # one loopback host serves every URL: no politeness spacing
            "PYTHONPATH": str(REPO),
        }
    )
    logs = Path(os.environ.get("INGEST_CHAOS_LOG_DIR") or tmp_path / "logs")
    fleet = [
        CeleryWorker("w1", env, logs, pool="threads", concurrency=8),
        CeleryWorker("w2", env, logs, pool="threads", concurrency=8),
        CeleryWorker("w3", env, logs, pool="prefork", concurrency=2),
    ]
    client = redis.Redis.from_url(broker.url, socket_timeout=5)
    state = StateStore(client, prefix=env["INGEST_KEY_PREFIX"])
    figures: dict[str, object] = {}
    stop_supervising = threading.Event()
    try:
        with FlakySite() as site:
            urls, expected = chaos_plan(site.base)
            urls_file = tmp_path / "urls.txt"
            urls_file.write_text("\n".join(urls) + "\n")
            for w in fleet:
                w.start()
            threading.Thread(target=_supervise, args=(fleet, stop_supervising), daemon=True).start()
            out = json.loads(ingest("submit", "-f", str(urls_file), "--json", env=env).stdout)
            batch = out["batch"]
            assert out["submitted"] == N_URLS
            deadline = time.monotonic() + RUN_DEADLINE

            at_kill = _wait_done_at_least(state, batch, N_URLS // 4, deadline)
            fleet[0].kill()
            figures["w1 SIGKILLed at"] = _when(t0, at_kill)
            time.sleep(1.0)
            fleet[0].start()

            at_crash = _wait_done_at_least(state, batch, N_URLS * 6 // 10, deadline)
            broker.crash()
            figures["Redis SIGKILLed at"] = _when(t0, at_crash)
            time.sleep(1.5)
            broker.start()

            _wait_settled(state, batch, deadline)
            figures["seconds to settled (all terminal, broker empty)"] = round(time.monotonic() - t0, 1)
            stop_supervising.set()
            alive = {w.name: w.alive() for w in fleet}
            for w in fleet:
                w.stop()
            hits = dict(site.hits)

        JsonlStore(env["INGEST_STORAGE_URL"]).recover()  # parts of the killed worker
        records = list(read_records(env["INGEST_STORAGE_URL"]))
        final = summarize(state.counters(batch))
        url_states = Counter(v[:1].decode() for v in client.hvals(f"{env['INGEST_KEY_PREFIX']}:urls"))
        stored_ids = {
            k.hex() for k, v in client.hgetall(f"{env['INGEST_KEY_PREFIX']}:urls").items() if v[:1] == b"s"
        }
        ids = Counter(r["id"] for r in records)
        by_id = {url_id(canonicalize(u)): u for u in urls}
        lost = sorted(by_id[k.hex()] for k, v in client.hgetall(state.key("urls")).items() if v[:1] == b"q")
        figures.update(
            {
                "submitted": final["submitted"],
                "stored": final["stored"],
                "duplicate": final["duplicate"],
                "skipped": final["skipped"],
                "failed": final["failed"],
                "pending": final["pending"],
                "lost for good (pending, no message anywhere)": lost,
                "leases that ran out (tasks sent again)": int(
                    client.hget(state.key("fstat"), "leases_expired") or 0
                ),
                "reasons": {s: final[f"{s}_reasons"] for s in ("duplicate", "failed")},
                "url states in Redis": dict(url_states),
                "record lines in storage": len(records),
                "distinct record ids": len(ids),
                "ids written twice": sum(1 for c in ids.values() if c > 1),
                "stored URLs without a record": len(stored_ids - set(ids)),
                "requests to the site": sum(hits.values()),
                "worker starts": {w.name: w.starts for w in fleet},
                "workers that exited on their own (restarted)": {w.name: w.crashes for w in fleet},
                "broker backlog": _broker_backlog(client),
            }
        )
        with capsys.disabled():  # straight to the terminal: the CI log keeps the figures of a passing run
            print("\nchaos figures:\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()), flush=True)

        assert final["submitted"] == N_URLS and final["pending"] == len(lost) <= MAX_BROKER_LOSS, lost
        assert figures["ids written twice"] == 0, "a record id appears twice in the raw parts"
        for s, n in expected.items():  # exact, but for what a lost URL would have become
            assert n - len(lost) <= final[s] <= n, (s, final[s], n)
        assert final["stored"] + final["duplicate"] + final["skipped"] + final["failed"] == N_URLS - len(lost)
        assert url_states.get("q", 0) == len(lost)  # every other claimed URL is terminal, once
        assert set(ids) == stored_ids  # no record lost, none without its terminal state
        assert len(records) == len(ids)  # no record id twice
        assert _broker_backlog(client) == {"fetch": 0, "process": 0, "unacked": 0}
        assert all(alive.values()), alive
    finally:
        stop_supervising.set()
        if "submitted" not in figures:  # failed early: what we know so far helps the post-mortem
            print(f"\nchaos figures so far: {figures}", flush=True)
        for w in fleet:
            if w.alive():
                w.stop(timeout=20)
        broker.stop()
        if os.environ.get("INGEST_CHAOS_KEEP_LOGS"):
            print(f"logs kept in {logs}")
