"""Real processes for the reliability tests: a private append-only Redis, Celery workers, a flaky site.

Everything here runs on loopback and is started (and stopped, by pid) by the test that uses it.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import redis

from ingest_core.embedded import free_port, redis_server_binary
from tests.conftest import REPO, article_html


class AppendOnlyRedis:
    """A private ``redis-server`` with ``appendfsync always``; ``crash()`` is SIGKILL, ``start()`` restarts it
    on the same port and directory, so what it acknowledged before the crash is there after it."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 20.0) -> AppendOnlyRedis:
        cmd = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.alive():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {self.port}: {self.log_tail()}")
            time.sleep(0.05)
        return self

    def alive(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2).ping())
        except (redis.RedisError, OSError):
            return False

    def crash(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""


class CeleryWorker:
    """``celery -A worker.celery_app worker -n <name>@%h`` in its own process group (so a SIGKILL takes the
    pool children with it, like a machine dying)."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, *, pool: str, concurrency: int,
        queues: str = "fetch,process",
    ) -> None:  # fmt: skip
        self.name, self.env, self.log_dir = name, env, log_dir
        self.pool, self.concurrency, self.queues = pool, concurrency, queues
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.crashes = 0
        self._down_on_purpose = False

    def start(self) -> CeleryWorker:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - child keeps its own copy
        cmd = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "-n", f"{self.name}@%h", "-Q", self.queues, "-P", self.pool, "-c", str(self.concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        log.close()
        self.starts += 1
        self._down_on_purpose = False
        return self

    def supervise(self) -> bool:
        """Restart the worker if it exited on its own (what systemd's Restart=always does); True if it did."""
        if self.proc is None or self._down_on_purpose or self.proc.poll() is None:
            return False
        self.crashes += 1
        self.start()
        return True

    def kill(self) -> None:
        """SIGKILL the worker and its pool children (its process group, which we created)."""
        assert self.proc is not None
        self._down_on_purpose = True
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> None:
        """Warm shutdown: finish the task in hand, publish part files."""
        self._down_on_purpose = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        path = self.log_dir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


class _FlakyHandler(BaseHTTPRequestHandler):
    """/a/<n> article n; /e/<n>?k= 503 for the first k hits; /r/<n>?k= TCP reset for the first k hits;
    /s/<n> article n sent slowly; /d/<n> article n again under another URL (a duplicate text)."""

    protocol_version = "HTTP/1.1"
    server: FlakySite

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.server.lock:
            self.server.hits[parts.path] = hit = self.server.hits.get(parts.path, 0) + 1
        kind, _, n = parts.path.strip("/").partition("/")
        if not n.isdigit():
            return self._send(404, b"<html><body>not found</body></html>")
        body = article_html(int(n)).encode()
        if kind == "e" and hit <= int(q.get("k", "1")):
            return self._send(503, b"<html><body>busy</body></html>")
        if kind == "r" and hit <= int(q.get("k", "1")):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return None
        if kind == "s":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = len(body) // 4 + 1
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                self.wfile.flush()
                time.sleep(0.25)
            return None
        if kind in ("a", "e", "r", "d"):
            return self._send(200, body)
        return self._send(404, b"<html><body>not found</body></html>")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FlakySite(ThreadingHTTPServer):
    """The flaky site on 127.0.0.1, served from a thread; ``hits`` counts requests per path."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FlakyHandler)
        self.lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.base = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a worker SIGKILLed mid-body breaks the pipe: expected here

    def __enter__(self) -> FlakySite:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
