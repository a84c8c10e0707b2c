import json
import socket
import subprocess
import sys
import tempfile

import pytest

from ingest_core.canonical import url_id
from ingest_core.embedded import free_port
from ingest_core.state import observation_fields
from tests.conftest import ingest
from tests.worker.ops.conftest import http_get, wait_port, wait_terminal


@pytest.fixture
def exporter(ingest_env, tmp_path):
    """Start ``ingest metrics`` as a subprocess; yields a function (extra env) -> base URL."""
    procs = []

    def start(**extra: str) -> str:
        port = free_port()
        env = {**ingest_env, **extra}
        log = open(tmp_path / f"metrics-{port}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "metrics", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(),
            )
        )
        wait_port(port)
        return f"http://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def _finish(state, url, outcome, reason="", **observed):
    uid = url_id(url)
    claim = state.claim([uid], batch="m")[0]
    state.finish(
        uid, claim.token, outcome, reason, batch="m", url=url, metrics=observation_fields(**observed)
    )


def test_exporter_shows_states_by_reason_latencies_bytes_queues_and_failing_domains(state, exporter):
    """One scrape carries every family: terminal states by reason, histograms, bytes, queues, domains."""
    _finish(
        state, "https://a.example/1", "stored", fetch_seconds=0.3, process_seconds=0.02, fetched_bytes=1000
    )
    _finish(state, "https://a.example/2", "stored", fetch_seconds=7.0, process_seconds=0.2, fetched_bytes=500)
    _finish(state, "https://bad.example/1", "failed", "http_503", fetch_seconds=1.5)
    status, body = http_get(exporter() + "/metrics")
    assert status == 200
    lines = set(body.splitlines())
    assert "ingest_exporter_up 1.0" in lines
    assert "ingest_submitted_total 3.0" in lines
    assert 'ingest_urls{reason="",state="stored"} 2.0' in lines
    assert 'ingest_urls{reason="http_503",state="failed"} 1.0' in lines
    assert 'ingest_fetch_seconds_bucket{le="0.5"} 1.0' in lines
    assert 'ingest_fetch_seconds_bucket{le="2.5"} 2.0' in lines
    assert 'ingest_fetch_seconds_bucket{le="+Inf"} 3.0' in lines
    assert "ingest_fetch_seconds_count 3.0" in lines
    assert "ingest_process_seconds_count 2.0" in lines
    assert "ingest_fetched_bytes_total 1500.0" in lines
    assert 'ingest_queue_messages{queue="fetch"} 0.0' in lines
    assert 'ingest_domain_failed_urls{domain="bad.example"} 1.0' in lines


def test_exporter_requires_basic_auth_when_configured(exporter):
    """With INGEST_METRICS_BASIC_AUTH set, a scrape without or with wrong credentials gets 401."""
    base = exporter(INGEST_METRICS_BASIC_AUTH="prom:s3cret")
    assert http_get(base + "/metrics")[0] == 401
    assert http_get(base + "/metrics", auth="prom:wrong")[0] == 401
    assert http_get(base + "/metrics", auth="prom:s3cret")[0] == 200


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "metrics.internal"])
def test_non_loopback_address_without_auth_is_refused(ingest_env, address):
    """``ingest metrics --address 0.0.0.0`` without INGEST_METRICS_BASIC_AUTH exits with a usage error and
    serves nothing, like ``ingest flower`` and ``ingest serve``."""
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "metrics", "--address", address, "--port", str(port)],
        env=ingest_env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 2 and "INGEST_METRICS_BASIC_AUTH" in proc.stderr
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_real_run_fills_latency_histograms_and_bytes(workers, state, page_server, exporter):
    """After real workers store a page, the exporter counts one fetch, one process and its bytes."""
    out = json.loads(
        ingest("submit", f"{page_server}/articles/story-5.html", "--json", env=workers.env).stdout
    )
    assert wait_terminal(state, out["batch"])["stored"] == 1
    lines = set(http_get(exporter() + "/metrics")[1].splitlines())
    assert "ingest_fetch_seconds_count 1.0" in lines
    assert "ingest_process_seconds_count 1.0" in lines
    assert "ingest_fetched_bytes_total 0.0" not in lines


def test_exporter_shows_the_frontier(state, exporter):
    """URLs waiting in the frontier, per busiest host, are exported (what no broker queue shows)."""
    from producers import submit

    submit([f"https://busy.example/{n}" for n in range(3)] + ["https://calm.example/1"], state=state)
    status, body = http_get(exporter() + "/metrics")
    assert status == 200
    lines = set(body.splitlines())
    assert "ingest_frontier_waiting 4.0" in lines
    assert "ingest_frontier_hosts 2.0" in lines
    assert 'ingest_frontier_host_waiting{host="busy.example"} 3.0' in lines
    assert "ingest_dispatch_paused 0.0" in lines
