"""A real HTTP server on loopback serving the feeds and sitemaps each test writes, and producer helpers."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from ingest_core.fetch import Fetcher
from ingest_core.frontier import Frontier
from ingest_core.state import StateStore


@dataclass
class Route:
    """What the server answers on one path. ``etag`` turns on conditional GET (304 on a match)."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/xml"
    etag: str | None = None
    last_modified: str | None = None
    gzip_encoding: bool = False
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class DocServer:
    """Routes by path; counts requests and 304s per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.not_modified: dict[str, int] = {}
        self.base = ""
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes | str = b"", **kw: object) -> str:
        self.routes[path] = Route(body=body.encode() if isinstance(body, str) else body, **kw)  # type: ignore[arg-type]
        return self.url(path)


def _handler(server: DocServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            with server.lock:
                server.hits[path] = server.hits.get(path, 0) + 1
            route = server.routes.get(path)
            if route is None:
                return self._send(404, b"not found", "text/plain")
            if route.delay:
                time.sleep(route.delay)
            if (
                route.etag
                and self.headers.get("If-None-Match") == route.etag
                or (route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified)
            ):
                with server.lock:
                    server.not_modified[path] = server.not_modified.get(path, 0) + 1
                return self._send(304, b"", route.content_type, route)
            body = gzip.compress(route.body) if route.gzip_encoding else route.body
            return self._send(route.status, body, route.content_type, route)

        def _send(self, status: int, body: bytes, ctype: str, route: Route | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if route is not None:
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                if route.gzip_encoding:
                    self.send_header("Content-Encoding", "gzip")
                for k, v in route.headers.items():
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

    return Handler


@pytest.fixture(scope="session")
def _doc_server() -> Iterator[DocServer]:
    server = DocServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield server
    httpd.shutdown()


@pytest.fixture
def docs(_doc_server: DocServer) -> DocServer:
    """The loopback document server, with no routes and no hits."""
    _doc_server.routes.clear()
    _doc_server.hits.clear()
    _doc_server.not_modified.clear()
    return _doc_server


@pytest.fixture
def fetcher() -> Fetcher:
    """The project's safe fetcher, allowed to reach loopback, with short timeouts."""
    return Fetcher(
        user_agent="article-ingest-tests",
        connect_timeout=2,
        read_timeout=1,
        deadline=3,
        max_bytes=1024 * 1024,
        max_redirects=3,
        allow_private_networks=True,
    )


@pytest.fixture
def state(redis_client: redis.Redis) -> StateStore:
    """A state store on the clean test Redis."""
    return StateStore(redis_client, prefix=f"t{uuid.uuid4().hex[:6]}")


def frontier_jobs(client: redis.Redis, prefix: str) -> list[dict]:
    """The jobs pending in the frontier (``<prefix>:jobs``), each with its claim token (``<prefix>:urls``)."""
    jobs = []
    for raw_id, raw in client.hgetall(f"{prefix}:jobs").items():
        job = json.loads(raw)
        job["token"] = client.hget(f"{prefix}:urls", raw_id).decode().removeprefix("q:")
        jobs.append(job)
    return jobs


def waiting(client: redis.Redis, prefix: str) -> int:
    """URLs waiting in the frontier's host queues (its ``waiting`` count)."""
    return Frontier(client, prefix=prefix).stats()["waiting"]


def host_queue(client: redis.Redis, prefix: str, host: str) -> list[str]:
    """The ids (hex) in one host's frontier queue, oldest first."""
    return [raw.hex() for raw in client.lrange(f"{prefix}:fq:{host}", 0, -1)]
