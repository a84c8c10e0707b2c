#!/usr/bin/env python3
"""Fetch under latency: our fetch queue vs a plain sequential ``requests`` loop, same servers, same run.

Every page answers after ``--latency`` seconds (the fault server's ``/delay``). The pages are spread over
``--hosts`` loopback addresses (127.0.1.x, one fault server each), interleaved as a multi-site feed would be,
so our default per-host politeness (1 request per host per second, robots.txt checked) is on and in force.
Ours is a real ``ingest worker -Q fetch`` (threads pool, default concurrency unless ``--threads`` adds more)
on a private Redis, fed by ``ingest submit``; with no process worker running, a page is "fetched" when its
process message is on the ``process`` queue (or the URL ended early, e.g. failed). The rate is steady state:
from 5% to 100% of pages fetched. The baseline is ``requests.Session().get`` in a loop over the first
``--baseline-pages`` URLs (its rate is flat: one page per latency). Goal: ours far above the process stage's
~60 pages/s on 2 cores, so fetching is never the bottleneck.

    PYTHONPATH=. python benchmarks/fetch_latency.py [--pages 2000] [--hosts 200] [--latency 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import bench_env, result, table  # noqa: E402

from ingest_core.embedded import start_redis_server  # noqa: E402
from ingest_core.settings import DEFAULT_FETCH_CONCURRENCY, DEFAULT_HOST_INTERVAL  # noqa: E402
from tests.faultserver import FaultServer  # noqa: E402

PROCESS_STAGE = 60.0
"""Pages/s the process stage manages on 2 cores (benchmarks/throughput.py): the bar to clear by far."""


def page_urls(servers: list[FaultServer], n: int, latency: float) -> list[str]:
    """``n`` distinct URLs, round-robin over the servers' hosts."""
    return [servers[i % len(servers)].url(f"/delay?s={latency}&page={i}") for i in range(n)]


def sequential(urls: list[str]) -> float:
    """Pages/s of a plain ``requests`` loop (one kept-alive session, the most generous form)."""
    with requests.Session() as session:
        t = time.perf_counter()
        for url in urls:
            session.get(url, timeout=10).raise_for_status()
        return len(urls) / (time.perf_counter() - t)


def ours(urls: list[str], threads: int, workdir: Path) -> dict:
    """Pages/s of ``ingest worker -Q fetch`` with ``threads`` threads, default politeness and robots."""
    proc, redis_url = start_redis_server(workdir)
    env = bench_env(workdir, INGEST_BROKER_URL=redis_url, INGEST_REDIS_URL=redis_url)
    del env["INGEST_HOST_INTERVAL"]  # the default per-host interval is part of what is measured
    client = redis.Redis.from_url(redis_url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "-Q", "fetch", "--fetch-concurrency", str(threads),
         "--loglevel", "WARNING"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        urls_file = workdir / "urls.txt"
        urls_file.write_text("\n".join(urls) + "\n")
        out = subprocess.run(
            [sys.executable, "-m", "worker.cli", "submit", "-f", str(urls_file), "--json"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert json.loads(out.stdout)["accepted"] == len(urls), out.stdout
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + 600
        n = len(urls)
        while time.monotonic() < deadline:
            counters = {k.decode(): int(v) for k, v in client.hgetall("ingest:counters").items()}
            ended = sum(counters.get(s, 0) for s in ("stored", "duplicate", "skipped", "failed"))
            samples.append((time.monotonic(), client.llen("process") + ended))
            if samples[-1][1] >= n:
                break
            time.sleep(0.05)
        start = next(s for s in samples if s[1] >= n * 0.05)
        end = samples[-1]
        return {
            "pages_per_s": (end[1] - start[1]) / (end[0] - start[0]),
            "fetched": end[1],
            "ended_early": ended,
        }
    finally:
        worker.terminate()
        worker.wait(60)
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=200, help="loopback hosts 127.0.1.1 ... (at most 250)")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds each page takes to answer")
    parser.add_argument("--baseline-pages", type=int, default=80, help="pages the sequential loop fetches")
    parser.add_argument(
        "--threads",
        type=int,
        action="append",
        help="fetch threads of ours (repeatable); default: half the default, and the default",
    )
    args = parser.parse_args()
    threads = args.threads or [DEFAULT_FETCH_CONCURRENCY // 2, DEFAULT_FETCH_CONCURRENCY]

    rows, figures = [], []
    with ExitStack() as stack:
        hosts = [f"127.0.1.{h}" for h in range(1, args.hosts + 1)]
        servers = [stack.enter_context(FaultServer(h, poll_interval=0.5)) for h in hosts]
        urls = page_urls(servers, args.pages, args.latency)
        base = sequential(urls[: args.baseline_pages])
        rows.append([f"sequential requests loop ({args.baseline_pages} pages)", base, 1.0, 1 / args.latency])
        for t in threads:
            with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
                r = ours(urls, t, Path(tmp))
            bound = min(t / args.latency, args.hosts / DEFAULT_HOST_INTERVAL)
            label = "the default" if t == DEFAULT_FETCH_CONCURRENCY else "--fetch-concurrency"
            rate = r["pages_per_s"]
            rows.append([f"ingest fetch queue, {t} threads ({label})", rate, rate / base, bound])
            figures.append((t, r["pages_per_s"]))
    table(
        f"fetch under latency: {args.pages} pages at {args.latency * 1000:.0f} ms over {args.hosts} loopback "
        f"hosts, politeness {DEFAULT_HOST_INTERVAL:g} s per host, {os.cpu_count()} cores",
        ["fetcher", "pages/s", "vs sequential", "bound (threads / latency, hosts / interval)"],
        rows,
    )
    for t, rate in figures:
        metric = f"fetch pages/s, {t} threads, {args.latency * 1000:.0f} ms latency"
        result("fetch_latency", metric, rate, base, goal_over_process_stage=PROCESS_STAGE, unit="pages/s")


if __name__ == "__main__":
    main()
