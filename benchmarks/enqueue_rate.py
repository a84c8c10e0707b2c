"""Enqueue rate: ``producers.submit`` on a 100,000-URL file against a naive one-``send_task``-per-URL loop.

Both run in the same process, on the same Redis. The naive loop only publishes Celery messages (no
canonicalization, no frontier claims; the project's app, task-sent events on as configured), so it is the
most generous baseline; ours canonicalizes and claims every URL into the frontier's per-host queues (one
Lua call per chunk of 1,000). No message is published at submit time any more: the dispatchers publish
fetch tasks as hosts become ready, so task events cost nothing here.

Also measures the frontier's memory per pending URL (job, host queue, state) and per seen URL (the state
entry kept once a URL has ended).

    python benchmarks/enqueue_rate.py                       # starts a private redis-server
    python benchmarks/enqueue_rate.py --redis-url redis://127.0.0.1:6379/13 --urls 100000 --naive 20000

Never point it at a Redis that workers consume from: the queue would be drained (and is deleted after).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import result as report  # noqa: E402

GOAL = 10_000
"""URLs/s that ``submit`` should reach from a file (issue 3)."""


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=os.environ.get("INGEST_BENCH_REDIS_URL", ""))
    parser.add_argument("--urls", type=int, default=100_000, help="URLs submitted by ours")
    parser.add_argument("--naive", type=int, default=20_000, help="URLs sent by the naive loop")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="enqueue-bench-")
    proc = None
    url = args.redis_url
    if not url:
        from ingest_core.embedded import start_redis_server

        proc, url = start_redis_server(tmp)
    os.environ["INGEST_BROKER_URL"] = url  # read by worker.celery_app at import
    try:
        run(url, args.urls, args.naive, Path(tmp))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


def run(url: str, n_ours: int, n_naive: int, tmp: Path) -> None:
    import redis
    from rich.console import Console
    from rich.table import Table

    from ingest_core.state import StateStore
    from producers import submit
    from producers.sources import iter_file
    from worker.celery_app import app

    r = redis.Redis.from_url(url)
    console = Console(width=120)
    rows: list[tuple[str, int, float, float]] = []

    # naive: what a user writes first, one send_task per URL through the default producer
    r.delete("fetch")
    t0 = time.perf_counter()
    for i in range(n_naive):
        job = {"url": f"https://naive.example/{i}", "id": uuid.uuid4().hex, "token": "t", "batch": "b"}
        app.send_task("ingest.fetch", args=[job], queue="fetch")
    naive_s = time.perf_counter() - t0
    assert r.llen("fetch") == n_naive
    rows.append(("naive: send_task per URL (publish only)", n_naive, naive_s, 0.0))
    r.delete("fetch")

    path = tmp / "urls.txt"
    with open(path, "w") as f:
        for i in range(n_ours):
            f.write(f"https://www.example.com/news/2026/03/story-{i}.html?utm_source=feed&id={i}\n")

    frontier = {}
    for label in ("ours: submit() from a file into the frontier", "ours, second run"):
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        state = StateStore(r, prefix=prefix)
        used_before = r.info("memory")["used_memory"]
        rss_before = _rss_mib()
        t0 = time.perf_counter()
        result = submit(iter_file(str(path)), source="bench", state=state)
        secs = time.perf_counter() - t0
        assert result.accepted == n_ours and state.frontier.stats()["waiting"] == n_ours, result
        assert r.llen("fetch") == 0  # nothing published at submit time
        rows.append((label, n_ours, secs, _rss_mib() - rss_before))
        if not frontier:
            frontier = {
                "pending": (r.info("memory")["used_memory"] - used_before) / n_ours,
                "memory_usage": r.memory_usage(state.key("urls"), samples=0) / n_ours,
                "encoding": r.object("encoding", state.key("urls")),
            }
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)

    naive_rate = n_naive / naive_s
    table = Table(title="enqueue rate (same process, same Redis)")
    for col in ("method", "URLs", "seconds", "URLs/s", "vs naive", "max RSS growth MiB"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for label, n, secs, rss in rows:
        rate = n / secs
        ratio = f"{rate / naive_rate:.1f}x"
        table.add_row(label, f"{n:,}", f"{secs:.2f}", f"{rate:,.0f}", ratio, f"{rss:.1f}")
    console.print(table)
    for label, n, secs, _ in rows[1:2]:
        metric = f"URLs/s, {label} vs naive loop"
        report("enqueue_rate", metric, n / secs, naive_rate, goal=GOAL, goal_on="ours", unit="URLs/s")
    report("enqueue_rate", "bytes per pending URL in the frontier", frontier["pending"], unit="B")
    report("enqueue_rate", "bytes per seen URL (state hash)", frontier["memory_usage"], unit="B")
    console.print(
        f"frontier: {frontier['pending']:.0f} bytes per pending URL (INFO used_memory delta: job, host "
        f"queue, state), {frontier['memory_usage']:.1f} bytes per URL of the state hash (what stays once "
        f"a URL has ended) over {n_ours:,} ids, encoding {frontier['encoding']!r}"
    )


if __name__ == "__main__":
    main()
