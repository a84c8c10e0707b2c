"""Network faults through the real CLI and workers: trickling servers and unreachable hosts end fast, named.

``ingest worker`` runs on a private Redis; URLs go in with ``ingest submit`` and the outcome is read with
``ingest stats --json``, as an operator would.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Workers, ingest
from tests.faultserver import FaultServer

FETCH_DEADLINE = 3.0
"""INGEST_FETCH_DEADLINE of these runs."""


def _wait_terminal(batch: str, env: dict[str, str], limit: float) -> tuple[dict, float]:
    """``ingest stats --json --batch`` until nothing is pending: (summary, seconds); fails after ``limit``."""
    start = time.monotonic()
    while True:
        s = json.loads(ingest("stats", "--json", "--batch", batch, env=env).stdout)
        took = time.monotonic() - start
        if s["pending"] == 0:
            return s, took
        assert took < limit, f"still pending after {limit:.0f}s: {s}"
        time.sleep(0.5)


@pytest.fixture
def env(ingest_env: dict[str, str]) -> dict[str, str]:
    env = dict(ingest_env)
    env.update(
        {
            "INGEST_FETCH_DEADLINE": str(FETCH_DEADLINE),
            "INGEST_HOST_INTERVAL": "0",
            # whatever is retried is retried with the defaults' shape, only short
            "INGEST_RETRY_BACKOFF": "0.5",
            "INGEST_RETRY_BACKOFF_MAX": "2",
            "INGEST_ROBOTS_ERROR_TTL": "2",
            "INGEST_TEST_OFFLINE_SUFFIX": ".offline.test",
            "PYTHONPATH": f"{REPO / 'tests' / 'reliability' / 'offline'}:{REPO}",
        }
    )
    return env


@pytest.fixture
def fleet(env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    w = Workers(env, tmp_path / "workers.log")
    yield w
    w.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trickled_status_headers_and_robots_end_as_failed_within_the_deadlines(env, fleet, capsys) -> None:  # noqa: ANN001
    """A status line or a header dripping a byte every half second, and a host whose robots.txt does the
    same, end failed (timeout, robots_unreachable) within their attempts' deadlines, not the minute each
    drip lasts."""
    with FaultServer("127.0.0.1") as pages, FaultServer("127.0.0.2") as robots_host:
        robots_host.set_robots("User-agent: *\n", trickle="header")
        urls = [
            pages.url("/trickle-status?every=0.5"),
            pages.url("/trickle-header?every=0.5"),
            robots_host.url("/article/1"),
        ]
        batch = json.loads(ingest("submit", *urls, "--json", env=env).stdout)["batch"]
        # 4 attempts (3 retries) of at most the deadline each, backoff of at most 2 s between: under 25 s;
        # one drip lasts 60 s, so any attempt that outlives its deadline fails this bound
        s, took = _wait_terminal(batch, env, limit=60.0)
    with capsys.disabled():
        print(f"\ntrickle figures: {s['failed_reasons']} in {took:.1f}s (deadline {FETCH_DEADLINE:g}s)")
    assert s["failed"] == 3
    assert s["failed_reasons"] == {"timeout": 2, "robots_unreachable": 1}
    assert fleet.proc.poll() is None


def test_unresolvable_and_refusing_hosts_fail_fast_with_their_own_reason(env, fleet, capsys) -> None:  # noqa: ANN001
    """Offline DNS (EAI_AGAIN) and a refused connection, for the page and its robots.txt alike, end
    failed:dns_error and failed:connection_refused within seconds, not robots_unreachable after minutes."""
    port = _closed_port()
    urls = [
        "http://news.offline.test/news/1",
        "http://news.offline.test/news/2",
        f"http://127.0.0.1:{port}/a",
    ]
    start = time.monotonic()
    batch = json.loads(ingest("submit", *urls, "--json", env=env).stdout)["batch"]
    s, _ = _wait_terminal(batch, env, limit=30.0)
    took = time.monotonic() - start
    with capsys.disabled():
        print(f"\nunreachable figures: {s['failed_reasons']} in {took:.1f}s")
    assert s["failed_reasons"] == {"dns_error": 2, "connection_refused": 1}
    assert took < 30.0
