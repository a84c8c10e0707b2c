#!/usr/bin/env python3
"""What the durability default costs: ``INGEST_STORAGE_FSYNC=record`` (fdatasync of every record before it
counts stored) against ``off`` (the OS writes back when it likes), in the same run, on the same disk.

Two figures, each from interleaved rounds (off, record, off, record, ...) so drift hits both alike:
- the process stage as a worker runs it (extract, clean, enrich, build the record, append it), pages/s;
- the bare JSONL append of those same records, records/s (the upper bound of what fsync can cost).

    .venv/bin/python benchmarks/storage_fsync.py [--pages 400] [--rounds 3] [--dir ./data/bench-fsync]

The directory must be on the disk records would go to (``/tmp`` is often a tmpfs, where fsync is free).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO, corpus, corpus_name, result, table  # noqa: E402
from worker.pipeline.clean import Cleaner  # noqa: E402
from worker.pipeline.enrich import Enricher  # noqa: E402
from worker.pipeline.extract import Extractor  # noqa: E402
from worker.runner import Job, build_record  # noqa: E402
from worker.storage.jsonl import JsonlStore  # noqa: E402


def _records(pages: list[str], n: int) -> list[dict]:
    extractor, cleaner, enricher = Extractor(), Cleaner(), Enricher()
    out = []
    for i in range(n):
        url = f"https://bench.example/p/{i}"
        doc = extractor.extract(pages[i % len(pages)], url)
        if doc is None or not doc.text.strip():
            continue
        job = Job(url=url, id=f"{i:032x}", token="t", batch="b", source="bench")
        out.append(
            build_record(
                job, cleaner.clean(doc), final_url=url, status=200, fetched_at="2026-03-01T00:00:00Z",
                enricher=enricher,
            )
        )  # fmt: skip
    return out


def _process_round(pages: list[str], n: int, folder: Path, fsync: str) -> float:
    """Pages/s of extract .. append, as the process stage does it."""
    extractor, cleaner, enricher = Extractor(), Cleaner(), Enricher()
    store = JsonlStore(folder, fsync=fsync)
    t0 = time.perf_counter()
    for i in range(n):
        url = f"https://bench.example/p/{i}"
        doc = extractor.extract(pages[i % len(pages)], url)
        if doc is None or not doc.text.strip():
            continue
        job = Job(url=url, id=f"{i:032x}", token="t", batch="b", source="bench")
        record = build_record(
            job, cleaner.clean(doc), final_url=url, status=200, fetched_at="2026-03-01T00:00:00Z",
            enricher=enricher,
        )  # fmt: skip
        store.write(record)
    elapsed = time.perf_counter() - t0
    store.close()
    return n / elapsed


def _append_round(records: list[dict], folder: Path, fsync: str) -> float:
    """Records/s of the bare append."""
    store = JsonlStore(folder, fsync=fsync)
    t0 = time.perf_counter()
    for record in records:
        store.write(record)
    elapsed = time.perf_counter() - t0
    store.close()
    return len(records) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=REPO / "data" / "bench-fsync")
    args = parser.parse_args()
    pages = corpus()
    Enricher().warm_up()
    records = _records(pages, args.pages)
    rates: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for fsync in ("off", "record"):
            folder = args.dir / f"{fsync}-{r}"
            shutil.rmtree(folder, ignore_errors=True)
            rates.setdefault(("process", fsync), []).append(_process_round(pages, args.pages, folder, fsync))
            rates.setdefault(("append", fsync), []).append(_append_round(records, folder / "append", fsync))
            shutil.rmtree(folder, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    table(
        f"storage fsync: {args.pages} pages of {corpus_name()}, {args.rounds} interleaved rounds, "
        f"dir {args.dir}",
        ["stage", "fsync=record (default)", "fsync=off", "record / off"],
        [
            ["extract .. append, pages/s", med[("process", "record")], med[("process", "off")],
             med[("process", "record")] / med[("process", "off")]],
            ["bare append, records/s", med[("append", "record")], med[("append", "off")],
             med[("append", "record")] / med[("append", "off")]],
        ],
    )  # fmt: skip
    per_record_ms = 1000 * (1 / med[("append", "record")] - 1 / med[("append", "off")])
    print(f"fdatasync adds {per_record_ms:.2f} ms per record on this disk", flush=True)
    result("storage_fsync", "process stage pages/s, fsync=record vs off", med[("process", "record")],
           med[("process", "off")])  # fmt: skip
    result("storage_fsync", "bare append records/s, fsync=record vs off", med[("append", "record")],
           med[("append", "off")])  # fmt: skip
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
