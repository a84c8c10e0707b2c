#!/usr/bin/env python3
"""Memory bound: 10,000 pages through one process worker's code path; RSS must stop growing after warm-up.

In this process, with the objects a process worker builds (``Pipeline.from_settings``), per page: claim,
``process_job`` on a packed page (decompress, extract, clean, dedupe in Redis, enrich, store to JSONL),
``finish``. Real pages (the corpus is cycled; duplicates are kept, so every page is written). RSS is
printed at start, after warm-up, in the middle and at the end. Goal: growth after warm-up < 10%.

    PYTHONPATH=. python benchmarks/memory_bound.py [--pages 10000] [--warmup 1000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus, corpus_name, result, table  # noqa: E402

from ingest_core.canonical import url_id  # noqa: E402
from ingest_core.embedded import EmbeddedRedis  # noqa: E402
from ingest_core.fetch import FetchResult  # noqa: E402
from ingest_core.settings import Settings  # noqa: E402
from worker.runner import Job, Pipeline, pack_page  # noqa: E402

GOAL = 0.10
"""Largest RSS growth from the end of warm-up to the end of the run."""

CLAIM_CHUNK = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args()
    proc = psutil.Process()
    pages = corpus()
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        redis_dir = Path(tmp) / "redis"
        url, _ = EmbeddedRedis(redis_dir, appendonly=False).ensure()
        try:
            settings = Settings.from_env(
                {}, broker_url=url, storage_url=str(Path(tmp) / "records"), keep_duplicates=True,
                respect_robots=False,
            )  # fmt: skip
            p = Pipeline.from_settings(settings)
            rss: dict[str, float] = {"start": proc.memory_info().rss / 2**20}
            samples: list[tuple[int, float]] = []
            t0 = time.perf_counter()
            for start in range(0, args.pages, CLAIM_CHUNK):
                stop = min(start + CLAIM_CHUNK, args.pages)
                urls = [f"http://bench.test/p/{i}" for i in range(start, stop)]
                claims = p.state.claim([url_id(u) for u in urls], batch="mem")
                for i, (u, claim) in enumerate(zip(urls, claims, strict=True), start=start):
                    html = pages[i % len(pages)]
                    page = pack_page(FetchResult(u, u, 200, {}, "text/html", "utf-8", html, len(html), 0.0))
                    job = Job(url=u, id=claim.url_id, token=claim.token, batch="mem")
                    p.finish(job, p.process_job(job, page))
                    done = i + 1
                    if done % 1000 == 0 or done in (args.warmup, args.pages // 2):
                        gc.collect()
                        mb = proc.memory_info().rss / 2**20
                        samples.append((done, mb))
                        rate = done / (time.perf_counter() - t0)
                        print(f"  {done:>6} pages  RSS {mb:7.1f} MiB  {rate:.1f} pages/s", flush=True)
                        if done == args.warmup:
                            rss["after warm-up"] = mb
                        if done == args.pages // 2:
                            rss["middle"] = mb
            p.store.close()
            rss["end"] = proc.memory_info().rss / 2**20
            counters = p.state.counters("mem")
        finally:
            EmbeddedRedis(redis_dir).stop()
    growth = (rss["end"] - rss["after warm-up"]) / rss["after warm-up"]
    table(
        f"memory bound: {args.pages} pages of {corpus_name()} through one process (warm-up {args.warmup})",
        ["point", "RSS MiB"],
        [[k, v] for k, v in rss.items()] + [["growth after warm-up", f"{100 * growth:.1f}% (goal < 10%)"]],
    )
    print(f"\nstored {counters.get('stored', 0)}, duplicate {counters.get('duplicate', 0)}", flush=True)
    result("memory_bound", "RSS growth after warm-up (fraction)", growth, goal=GOAL, lower_is_better=True,
           rss_mib=rss)  # fmt: skip


if __name__ == "__main__":
    main()
