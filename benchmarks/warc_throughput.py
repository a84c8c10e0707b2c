#!/usr/bin/env python3
"""WARC ingest throughput: ``ingest run --warc`` through the process queue vs the CPU limit.

The limit is the one of ``benchmarks/throughput.py``: raw ``trafilatura.extract(html, with_metadata=True)``
in a warm process pool of the same size as our process worker, over the same HTML, in the same run, rounds
interleaved (limit, ours, limit, ...; each round of ours over the mean of the limits around it, median
reported). Ours: the corpus pages written as one gzip-per-record WARC (a warcinfo record, then a request and
a response record per page, as crawlers write them), read, claimed and published as ``ingest.process``
tasks by the CLI, then extract, clean, dedupe, enrich and store in the prefork worker; no fetching. Steady
state is polled on the broker's counters from 5% to 100% of pages terminal. Goal: >= 0.90.

    PYTHONPATH=. python benchmarks/warc_throughput.py [--pages 905] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus, corpus_name, result, table  # noqa: E402
from throughput import cpu_limit, timed_run  # noqa: E402

GOAL = 0.90
"""Steady-state pages/s of WARC ingest over the CPU limit (issue 16)."""


def write_warc(path: Path, htmls: list[str]) -> None:
    """One request and one response record per page, each record its own gzip member."""
    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "warc_throughput.py"}))
        for i, html in enumerate(htmls):
            url = f"https://bench{i % 50}.example.com/p/{i}"
            req = StatusAndHeaders(
                f"GET /p/{i} HTTP/1.1", [("Host", "bench.example.com")], is_http_request=True
            )
            writer.write_record(
                writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=req)
            )
            http = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
            )
            body = io.BytesIO(html.encode("utf-8"))
            writer.write_record(writer.create_warc_record(url, "response", payload=body, http_headers=http))


def run_warc(warc: Path, pages: int, concurrency: int, workdir: Path) -> dict:
    """``ingest run --warc``; returns its JSON summary plus steady-state and cold pages/s."""
    args = ["--warc", str(warc), "-c", str(concurrency), "--fetch-concurrency", "1"]
    # request records end skipped at once: count the pages' ends only
    return timed_run(args, pages, workdir, not_counted=("skipped:warc_request",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=905, help="pages in the WARC (the corpus is cycled)")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="process pool size")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ours, each between two limits")
    args = parser.parse_args()

    pages = corpus()
    htmls = [pages[i % len(pages)] for i in range(args.pages)]
    limits = [cpu_limit(htmls, args.concurrency)]
    rounds, rows = [], []
    ours: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-warc-") as keep:
        warc = Path(keep) / "bench.warc.gz"
        write_warc(warc, htmls)
        size = warc.stat().st_size
        for k in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-warc-run-") as tmp:
                ours = run_warc(warc, args.pages, args.concurrency, Path(tmp))
            limits.append(cpu_limit(htmls, args.concurrency))
            limit = (limits[-2] + limits[-1]) / 2
            steady, cold = ours["steady_pages_per_s"], ours["cold_pages_per_s"]
            rounds.append((steady / limit, cold / limit, steady, cold, limit))
            rows += [
                [f"round {k + 1}: CPU limit (mean of the two around it)", limit, 1.0],
                [f"round {k + 1}: ingest run --warc, steady state (5% -> 100% terminal)", steady,
                 steady / limit],
                [f"round {k + 1}: ingest run --warc, cold ({ours['cold_seconds']:.1f} s, with start-up)",
                 cold, cold / limit],
            ]  # fmt: skip
    rounds.sort()
    mid = rounds[(len(rounds) - 1) // 2]
    table(
        f"warc_throughput: {args.pages} pages of {corpus_name()} in one {size / 1e6:.1f} MB WARC, "
        f"{args.concurrency} processes, {os.cpu_count()} cores; CPU limits measured "
        f"{', '.join(f'{x:.1f}' for x in limits)} pages/s",
        ["run", "pages/s", "ratio to CPU limit"],
        rows,
    )
    states = {s: ours.get(s, 0) for s in ("stored", "duplicate", "skipped", "failed", "pending")}
    print(f"\nstates (last round): {states}; median round reported", flush=True)
    result("warc_throughput", "steady pages/s vs CPU limit", mid[2], mid[4], goal=GOAL, unit="pages/s")
    result("warc_throughput", "cold pages/s vs CPU limit", mid[3], mid[4], unit="pages/s")


if __name__ == "__main__":
    main()
