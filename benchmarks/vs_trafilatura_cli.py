#!/usr/bin/env python3
"""Against the tool a user would otherwise pick: ``trafilatura -i urls.txt --parallel 16`` on the same URLs.

trafilatura gets a config file with ``SLEEP_TIME = 0`` (no per-domain pause: every URL here is on one
loopback host) and ``SSRF_PROTECTION = off`` (so it may fetch loopback), and writes JSON with metadata to a
directory, as we write records. Both commands are timed whole, start-up included, in the same run;
``ingest run`` starts its own embedded Redis and workers. The CLI runs before and after ours and the mean
is its rate, so load from other processes hits both. Goal: ours >= 2.0x the pages/s of the CLI, on
distinct documents (each URL's paragraphs are marked): the table shows how many each wrote.

Note: the CLI downloads with ``--parallel`` threads but extracts in its main thread (one core), so on a
machine with C cores the ceiling of this ratio is about C x our efficiency (throughput.py), minus start-up.

    PYTHONPATH=. python benchmarks/vs_trafilatura_cli.py [--pages 905]
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trafilatura

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PageServer, corpus, corpus_name, page_urls, result, table  # noqa: E402
from throughput import run_ingest  # noqa: E402

GOAL = 2.0
"""Pages/s of ``ingest run`` over the trafilatura CLI's (issue 14), on distinct documents."""


def trafilatura_config(path: Path) -> Path:
    """trafilatura's own settings.cfg with SLEEP_TIME=0 and SSRF_PROTECTION=off (both keys checked)."""
    cfg = configparser.ConfigParser()
    cfg.read(Path(trafilatura.__file__).parent / "settings.cfg")
    for key in ("SLEEP_TIME", "SSRF_PROTECTION"):
        if key not in cfg["DEFAULT"]:
            raise SystemExit(f"trafilatura {trafilatura.__version__} settings.cfg has no {key}")
    cfg["DEFAULT"]["SLEEP_TIME"] = "0"
    cfg["DEFAULT"]["SSRF_PROTECTION"] = "off"
    with open(path, "w") as fh:
        cfg.write(fh)
    return path


def run_cli(urls: list[str], parallel: int, workdir: Path) -> tuple[float, int]:
    """Seconds for the trafilatura CLI over ``urls``, and the number of documents it wrote."""
    urls_file = workdir / "urls.txt"
    urls_file.write_text("\n".join(urls) + "\n")
    out = workdir / "out"
    cmd = [
        shutil.which("trafilatura") or str(Path(sys.executable).parent / "trafilatura"),
        "-i", str(urls_file), "--parallel", str(parallel), "-o", str(out),
        "--output-format", "json", "--with-metadata",
        "--config-file", str(trafilatura_config(workdir / "settings.cfg")),
    ]  # fmt: skip
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    return time.monotonic() - t, sum(1 for _ in out.glob("*")) if out.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=905)
    parser.add_argument("--parallel", type=int, default=16, help="trafilatura --parallel")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="our process pool")
    args = parser.parse_args()

    pages = corpus()
    # distinct documents: the CLI drops a page whose text it has seen (the corpus repeats every 181 pages),
    # which would shrink its work; marked paragraphs make each URL its own document
    with PageServer(pages, distinct=True) as server:
        urls = page_urls(server.base, args.pages)
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            before_s, cli_docs = run_cli(urls, args.parallel, Path(tmp))
        with tempfile.TemporaryDirectory(prefix="bench-cli-ours-") as tmp:
            ours = run_ingest(urls, args.concurrency, args.parallel, Path(tmp))
        with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
            after_s, _ = run_cli(urls, args.parallel, Path(tmp))
    cli_s = (before_s + after_s) / 2
    # INGEST_KEEP_DUPLICATES=true: every page is written, stored or flagged as a (near-)duplicate
    written = ours.get("stored", 0) + ours.get("duplicate", 0)
    cli_rate = args.pages / cli_s
    ours_rate = ours["cold_pages_per_s"]
    table(
        f"vs trafilatura CLI: {args.pages} URLs of {corpus_name()} on loopback, {os.cpu_count()} cores",
        ["command", "seconds", "documents", "pages/s", "ratio"],
        [
            [f"trafilatura -i urls.txt --parallel {args.parallel} (runs: {before_s:.1f} s, {after_s:.1f} s)",
             cli_s, cli_docs, cli_rate, 1.0],
            [f"ingest run -c {args.concurrency}", ours["cold_seconds"], written, ours_rate,
             ours_rate / cli_rate],
            ["ingest run, steady state (start-up excluded)", "-", "-", ours["steady_pages_per_s"],
             ours["steady_pages_per_s"] / cli_rate],
        ],
    )  # fmt: skip
    result("vs_trafilatura_cli", "pages/s vs trafilatura CLI --parallel 16", ours_rate, cli_rate, goal=GOAL,
           unit="pages/s", cli_documents=cli_docs, our_documents=written)  # fmt: skip


if __name__ == "__main__":
    main()
