"""Real workers for the storage fault tests: ``ingest worker`` as a subprocess or, like a container, in its
own UTS and PID namespaces under a hostname of its own (SIGKILL of the namespace's PID 1 takes every
process in it, and a restarted worker gets the same PIDs again)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ingest
from tests.reliability._harness import AppendOnlyRedis

STALL_DIR = Path(__file__).resolve().parent / "stall"
"""Holds the test-only ``sitecustomize`` that can stall a worker between a write and its terminal state."""


class IngestWorker:
    """``ingest worker -c 2`` as a subprocess; with ``hostname``, as PID 1 of ``unshare -u -p`` under it."""

    def __init__(self, env: dict[str, str], log_path: Path, *, hostname: str | None = None) -> None:
        self.env, self.log_path, self.hostname = env, log_path, hostname
        self.proc: subprocess.Popen | None = None

    def start(self) -> IngestWorker:
        cmd = [sys.executable, "-m", "worker.cli", "worker", "-c", "2", "--fetch-concurrency", "8",
               "--loglevel", "WARNING"]  # fmt: skip
        if self.hostname:
            cmd = ["unshare", "-u", "-p", "-f", "--mount-proc", "sh", "-c", 'hostname "$0" && exec "$@"',
                   self.hostname, *cmd]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
            )
        return self

    def _main_pid(self) -> int:
        """The ``ingest worker`` process: the namespace's PID 1 (unshare's child), else our child."""
        assert self.proc is not None
        if not self.hostname:
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def kill(self) -> None:
        """SIGKILL the worker's PID namespace: every process in it dies at once, as in a dead container."""
        assert self.proc is not None and self.hostname, "kill() needs the namespaced worker"
        os.kill(self._main_pid(), signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 90.0) -> None:
        """Warm shutdown (SIGTERM): tasks in hand finish, part files are published."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            main = self._main_pid()
        except (OSError, IndexError):
            main = self.proc.pid
        os.kill(main, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(main, signal.SIGKILL)
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def need_root(what: str) -> None:
    """Skip (fail in CI) when the test cannot be root: mounts and namespaces need it."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return
    if os.environ.get("INGEST_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} needs root and unshare(1)")
    pytest.skip(f"{what} needs root and unshare(1)")


def storage_env(broker: AppendOnlyRedis, tmp_path: Path, storage_url: str, **extra: str) -> dict[str, str]:
    """Environment for CLI and workers: a private Redis, loopback allowed, quick re-delivery."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        {
            "INGEST_BROKER_URL": broker.url,
            "INGEST_STORAGE_URL": storage_url,
            "INGEST_DATA_DIR": str(tmp_path / "data"),
            "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
            "INGEST_KEY_PREFIX": f"st{uuid.uuid4().hex[:6]}",
            "INGEST_VISIBILITY_TIMEOUT": "10",
            "INGEST_REDELIVER_AFTER": "60",
            "INGEST_RETRY_BACKOFF": "0.2",
            "INGEST_HOST_INTERVAL": "0",
            "INGEST_ROTATE_SECONDS": "2",
            "PYTHONPATH": str(REPO),
            **extra,
        }
    )
    return env


def stats(env: dict[str, str]) -> dict[str, Any]:
    """``ingest stats --json``."""
    return json.loads(ingest("stats", "--json", env=env, timeout=60).stdout)


def wait_for(check: Callable[[], Any], what: str, timeout: float, every: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(every)


def submit(env: dict[str, str], urls: list[str]) -> str:
    """Submit URLs with ``ingest submit``; returns the batch id."""
    out = json.loads(ingest("submit", "--json", "-f", "-", stdin="\n".join(urls) + "\n", env=env).stdout)
    assert out["submitted"] == len(urls), out
    return out["batch"]


def export_ids(env: dict[str, str], tmp_path: Path) -> tuple[list[str], str]:
    """The record ids ``ingest export`` writes (one per line), and its stderr."""
    target = tmp_path / f"export-{uuid.uuid4().hex[:6]}.jsonl"
    proc = ingest("export", "--to", str(target), env=env, timeout=120)
    return [json.loads(line)["id"] for line in target.read_text().splitlines()], proc.stderr


def raw_ids(records_dir: Path) -> Counter[str]:
    """Record ids in every published part, line by line, asserting every line is whole JSON."""
    ids: Counter[str] = Counter()
    for part in sorted(records_dir.rglob("*.jsonl")):
        data = part.read_bytes()
        assert data.endswith(b"\n"), f"published part {part} ends with a torn line"
        ids.update(json.loads(line)["id"] for line in data.splitlines())
    return ids
