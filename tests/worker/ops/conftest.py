"""Helpers for ops tests: state on the test Redis with the test's key prefix, waiting for batches, HTTP."""

from __future__ import annotations

import base64
import socket
import time
import urllib.error
import urllib.request

import pytest

from ingest_core.state import StateStore, summarize


@pytest.fixture
def state(ingest_env: dict[str, str]) -> StateStore:
    """The state store the test's ingest commands and workers use (same Redis, same key prefix)."""
    return StateStore.from_url(ingest_env["INGEST_BROKER_URL"], prefix=ingest_env["INGEST_KEY_PREFIX"])


def wait_terminal(state: StateStore, batch: str, timeout: float = 60) -> dict:
    """The batch's summary once every URL in it is terminal."""
    deadline = time.monotonic() + timeout
    while True:
        s = summarize(state.counters(batch))
        if s["submitted"] and s["pending"] == 0:
            return s
        assert time.monotonic() < deadline, f"batch {batch} not terminal: {s}"
        time.sleep(0.1)


def wait_port(port: int, timeout: float = 30) -> None:
    """Until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listening on {port}"
            time.sleep(0.1)


def http_get(url: str, auth: str | None = None) -> tuple[int, str]:
    """Status and body of a GET (error statuses returned, not raised)."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
