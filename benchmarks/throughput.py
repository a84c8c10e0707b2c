#!/usr/bin/env python3
"""End-to-end throughput: pages served on loopback through ``ingest run`` vs the CPU limit.

The limit is raw ``trafilatura.extract(html, with_metadata=True)`` in a warm process pool of the same size
as our process worker, over the same HTML, in the same run. Rounds interleave limit, ours, limit, ours,
limit: each round of ours is divided by the mean of the limits measured just before and after it, and the
median ratio is reported, so load from other processes on a shared machine hits both sides.
Ours is the whole pipeline: fetch (threads), extract, clean, dedupe, enrich, store (prefork),
through a real broker. Two figures for ours: steady state (from 5% to 100% of pages terminal, polled on the
broker's counters: what a long-running fleet sees) and cold (the whole ``ingest run`` command: embedded
Redis and worker start included). Goal: steady-state ratio >= 0.90.

    PYTHONPATH=. python benchmarks/throughput.py [--pages 905] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import redis
import trafilatura

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PageServer, bench_env, corpus, corpus_name, page_urls, result, table  # noqa: E402

GOAL = 0.90
"""Steady-state pages/s of ours over the CPU limit."""


def _extract(html: str) -> int:
    return int(trafilatura.extract(html, with_metadata=True) is not None)


def cpu_limit(htmls: list[str], processes: int) -> float:
    """Pages/s of raw trafilatura in a warm pool of ``processes``."""
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_extract, htmls[: processes * 2]))  # imports and first-call costs out of the timing
        t = time.perf_counter()
        list(pool.map(_extract, htmls, chunksize=2))
        return len(htmls) / (time.perf_counter() - t)


def timed_run(args: list[str], pages: int, workdir: Path, not_counted: tuple[str, ...] = ()) -> dict:
    """``ingest run ARGS --json`` on the embedded Redis under ``workdir``; its JSON summary plus steady-state
    (5% -> 100% of ``pages`` ended, polled on the counters) and cold (whole command) pages/s.
    ``not_counted``: counter fields whose ends are not pages (subtracted from the ended count)."""
    env = bench_env(workdir, INGEST_KEEP_DUPLICATES="true")  # every page is written, even repeats
    cmd = [sys.executable, "-m", "worker.cli", "run", *args, "--json", "--timeout", "900"]
    url_file = workdir / "data" / "redis" / "redis.url"
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    client = None
    while proc.poll() is None:
        try:
            if client is None and url_file.exists():
                client = redis.Redis.from_url(url_file.read_text().strip(), socket_timeout=2)
            if client is not None:
                c = {k.decode(): int(v) for k, v in client.hgetall("ingest:counters").items()}
                done = sum(c.get(s, 0) for s in ("stored", "duplicate", "skipped", "failed"))
                samples.append((time.monotonic(), done - sum(c.get(k, 0) for k in not_counted)))
        except (redis.RedisError, OSError, ValueError):
            pass
        time.sleep(0.05)
    cold = time.monotonic() - t0
    out, _ = proc.communicate()
    summary = json.loads(out.strip().splitlines()[-1])
    start = next((t, d) for t, d in samples if d >= pages * 0.05)
    end = next(((t, d) for t, d in samples if d >= pages), samples[-1])
    summary["steady_pages_per_s"] = (end[1] - start[1]) / (end[0] - start[0])
    summary["cold_pages_per_s"] = pages / cold
    summary["cold_seconds"] = cold
    return summary


def run_ingest(urls: list[str], concurrency: int, fetch_threads: int, workdir: Path) -> dict:
    """``ingest run`` over ``urls``; returns its JSON summary plus steady-state and cold pages/s."""
    urls_file = workdir / "urls.txt"
    urls_file.write_text("\n".join(urls) + "\n")
    args = ["-f", str(urls_file), "-c", str(concurrency), "--fetch-concurrency", str(fetch_threads)]
    return timed_run(args, len(urls), workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=905, help="pages to ingest (the corpus is cycled)")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="process pool size")
    parser.add_argument("--fetch-threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ours, each between two limits")
    args = parser.parse_args()

    pages = corpus()
    htmls = [pages[i % len(pages)] for i in range(args.pages)]
    limits = [cpu_limit(htmls, args.concurrency)]
    rounds, rows = [], []
    with PageServer(pages) as server:
        for k in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-tp-") as tmp:
                ours = run_ingest(
                    page_urls(server.base, args.pages), args.concurrency, args.fetch_threads, Path(tmp)
                )
            limits.append(cpu_limit(htmls, args.concurrency))
            limit = (limits[-2] + limits[-1]) / 2
            steady, cold = ours["steady_pages_per_s"], ours["cold_pages_per_s"]
            rounds.append((steady / limit, cold / limit, steady, cold, limit))
            rows += [
                [f"round {k + 1}: CPU limit (mean of the two around it)", limit, 1.0],
                [f"round {k + 1}: ingest run, steady state (5% -> 100% terminal)", steady, steady / limit],
                [f"round {k + 1}: ingest run, cold ({ours['cold_seconds']:.1f} s, with start-up)", cold,
                 cold / limit],
            ]  # fmt: skip
    rounds.sort()
    mid = rounds[(len(rounds) - 1) // 2]
    table(
        f"throughput: {args.pages} pages of {corpus_name()}, {args.concurrency} processes, "
        f"{os.cpu_count()} cores; CPU limits measured {', '.join(f'{x:.1f}' for x in limits)} pages/s",
        ["run", "pages/s", "ratio to CPU limit"],
        rows,
    )
    states = {s: ours.get(s, 0) for s in ("stored", "duplicate", "skipped", "failed", "pending")}
    print(f"\nstates (last round): {states}; median round reported", flush=True)
    result("throughput", "steady pages/s vs CPU limit", mid[2], mid[4], goal=GOAL, unit="pages/s")
    result("throughput", "cold pages/s vs CPU limit", mid[3], mid[4], unit="pages/s")


if __name__ == "__main__":
    main()
