"""Fleet-wide per-host politeness through real workers: a slow host never holds up the others."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import article_html, ingest

INTERVAL = 0.5


class _Recorder(BaseHTTPRequestHandler):
    """Serves any /a/<n> as a unique article; records (host, path, time) of every request."""

    log: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        host = self.server.server_address[0]
        with self.lock:
            self.log.append((host, self.path, time.monotonic()))
        if not self.path.startswith("/a/"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        n = int(self.path.rsplit("/", 1)[1]) + 1000 * int(host.rsplit(".", 1)[1])
        body = article_html(n).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hosts() -> Iterator[dict[str, str]]:
    """21 HTTP servers, one per loopback address 127.0.0.2 .. 127.0.0.22; yields address -> base URL."""
    _Recorder.log = []
    servers = {}
    for i in range(2, 23):
        server = ThreadingHTTPServer((f"127.0.0.{i}", 0), _Recorder)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[f"127.0.0.{i}"] = server
    yield {addr: f"http://{addr}:{srv.server_address[1]}" for addr, srv in servers.items()}
    for server in servers.values():
        server.shutdown()


def _pending(batch: str, env: dict[str, str]) -> dict:
    return json.loads(ingest("stats", "--json", "--batch", batch, env=env).stdout)


def test_busy_host_trickles_while_other_hosts_finish(ingest_env, hosts, tmp_path):
    """1,000 URLs on one host and 200 over 20 others: the 200 finish while the busy host is held to its
    interval (consecutive requests to it at least one interval apart, most of its URLs still waiting)."""
    from tests.conftest import Workers

    env = {**ingest_env, "INGEST_HOST_INTERVAL": str(INTERVAL)}
    busy = hosts["127.0.0.2"]
    others = [base for addr, base in hosts.items() if addr != "127.0.0.2"]
    (tmp_path / "busy.txt").write_text("".join(f"{busy}/a/{n}\n" for n in range(1000)))
    (tmp_path / "others.txt").write_text("".join(f"{base}/a/{n}\n" for base in others for n in range(10)))

    workers = Workers(env, tmp_path / "workers.log")
    try:
        busy_batch = json.loads(ingest("submit", "-f", str(tmp_path / "busy.txt"), "--json", env=env).stdout)
        other_batch = json.loads(
            ingest("submit", "-f", str(tmp_path / "others.txt"), "--json", env=env).stdout
        )
        assert (busy_batch["accepted"], other_batch["accepted"]) == (1000, 200)
        deadline = time.monotonic() + 180
        while (stats := _pending(other_batch["batch"], env))["pending"]:
            assert time.monotonic() < deadline, f"the 200 URLs on other hosts did not finish: {stats}"
            time.sleep(0.5)
        busy_stats = _pending(busy_batch["batch"], env)
    finally:
        workers.stop()

    assert stats["stored"] == 200, stats
    assert busy_stats["pending"] > 800, f"the busy host was not held back: {busy_stats}"
    with _Recorder.lock:
        busy_times = sorted(
            t for host, path, t in _Recorder.log if host == "127.0.0.2" and path.startswith("/a/")
        )
    assert len(busy_times) >= 2
    gaps = [b - a for a, b in zip(busy_times, busy_times[1:], strict=False)]
    # slots are timed on the Redis clock, requests on ours: allow scheduling jitter, not a second request
    assert min(gaps) >= INTERVAL * 0.8, f"two requests to one host {min(gaps):.3f}s apart"


def test_one_host_gets_one_request_per_interval_over_100_requests(ingest_env, hosts, tmp_path):
    """101 URLs on one host through real workers: the server sees one request per interval on average
    (within 5%) and never two much closer than the interval."""
    from tests.conftest import Workers

    interval = 0.3
    env = {**ingest_env, "INGEST_HOST_INTERVAL": str(interval)}
    base = hosts["127.0.0.3"]
    (tmp_path / "one.txt").write_text("".join(f"{base}/a/{n}\n" for n in range(101)))
    workers = Workers(env, tmp_path / "workers.log")
    try:
        batch = json.loads(ingest("submit", "-f", str(tmp_path / "one.txt"), "--json", env=env).stdout)
        deadline = time.monotonic() + 240
        while (stats := _pending(batch["batch"], env))["pending"]:
            assert time.monotonic() < deadline, f"not finished: {stats}"
            time.sleep(0.5)
    finally:
        workers.stop()
    assert stats["stored"] == 101, stats
    with _Recorder.lock:
        times = sorted(t for host, path, t in _Recorder.log if host == "127.0.0.3" and path.startswith("/a/"))
    assert len(times) == 101  # each page once
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    mean = (times[-1] - times[0]) / len(gaps)
    assert abs(mean - interval) <= 0.05 * interval, f"mean interval {mean:.3f}s for {interval}s"
    assert min(gaps) >= interval * 0.8, f"two requests {min(gaps):.3f}s apart"
