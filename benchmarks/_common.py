"""Shared by the benchmark scripts: the page corpus, a loopback page server, result lines, tables.

Every script prints a table with its baseline measured in the same run, and one line
``RESULT {json}`` per figure that ``run_all.py`` collects into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "eval" / "article-extraction-benchmark" / "html"
"""Real news and blog pages (the ScrapingHub article-extraction benchmark), when the checkout is beside us."""


def corpus() -> list[str]:
    """The benchmark's real pages, else generated article pages (a fallback that is much lighter)."""
    paths = sorted(CORPUS.glob("*.html.gz")) if CORPUS.is_dir() else []
    if paths:
        return [gzip.decompress(p.read_bytes()).decode("utf-8", errors="replace") for p in paths]
    return [_generated(n) for n in range(200)]


def corpus_name() -> str:
    return "article-extraction-benchmark (181 real pages)" if CORPUS.is_dir() else "generated pages"


def _generated(n: int) -> str:
    paras = "".join(
        f"<p>Paragraph {i} of story {n}: the council met on day {i} to discuss plan {n}-{i}, and residents "
        f"said it would change how they travel, shop and work over the next {i + 2} years.</p>"
        for i in range(12)
    )
    nav = "".join(f'<li><a href="/s/{k}">Section {k}</a></li>' for k in range(40))
    return (
        f"<!doctype html><html><head><title>Story {n}</title><meta name='author' content='A. Writer'>"
        f"</head><body><nav><ul>{nav}</ul></nav><article><h1>Story {n}</h1>{paras}</article>"
        f"<footer>{nav}</footer></body></html>"
    )


def page_urls(base: str, n: int) -> list[str]:
    """``n`` distinct URLs; page ``i`` serves corpus page ``i % len(corpus)``."""
    return [f"{base}/p/{i}" for i in range(n)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PageServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path.startswith("/p/") and path[3:].isdigit():
            pages, i = self.server.pages, int(path[3:])
            body, status = pages[i % len(pages)], 200
            # every URL its own document: each paragraph ends with its number, six digits so that the
            # trafilatura CLI's output names (a hash of the words of 5+ characters) differ too
            if self.server.distinct:
                body = body.replace(b"</p>", f" (edition {i:06d})</p>".encode())
        else:
            body, status = b"<html><body>not found</body></html>", 404
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PageServer(ThreadingHTTPServer):
    """The corpus served on 127.0.0.1 from a thread, keep-alive, bodies encoded once up front."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, pages: Sequence[str], *, distinct: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pages = [p.encode("utf-8") for p in pages]
        self.distinct = distinct
        """Mark each URL's page (its paragraphs) so that no two URLs serve the same document."""
        self.base = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass

    def __enter__(self) -> PageServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def bench_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for ``ingest`` in a benchmark: embedded Redis under ``tmp``, loopback allowed, no
    politeness spacing (one loopback host serves every page, and the baselines do not wait either)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            "INGEST_DATA_DIR": str(tmp / "data"),
            "INGEST_STORAGE_URL": str(tmp / "records"),
            "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
            "INGEST_HOST_INTERVAL": "0",
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    env.update(extra)
    return env


def result(bench: str, metric: str, ours: float, baseline: float | None = None, **more: Any) -> None:
    """One figure for ``run_all.py``: printed as ``RESULT {json}``."""
    row = {"bench": bench, "metric": metric, "ours": round(ours, 3)}
    if baseline is not None:
        row["baseline"] = round(baseline, 3)
        row["ratio"] = round(ours / baseline, 3) if baseline else None
    row.update(more)
    print("RESULT " + json.dumps(row), flush=True)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""
    body = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    cells = [[str(c) for c in header], *body]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"{title}", ""]
    for k, r in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out = "\n".join(lines)
    print(out, flush=True)
    return out
