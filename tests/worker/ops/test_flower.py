import json
import subprocess
import sys
import tempfile
import time

import pytest

from ingest_core.embedded import free_port
from tests.conftest import ingest
from tests.worker.ops.conftest import http_get, wait_port, wait_terminal
from worker.ops.flower import flower_argv

AUTH = "ops:flower-pass"


@pytest.fixture
def flower(ingest_env, tmp_path):
    """``ingest flower`` on loopback with basic auth, as a subprocess; yields its base URL."""
    port = free_port()
    env = {**ingest_env, "INGEST_FLOWER_BASIC_AUTH": AUTH}
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "flower", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tempfile.gettempdir(),
    )
    wait_port(port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(15)
    log.close()


def _until(fetch, done, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting; last value: {value!r}"
        time.sleep(0.3)


def test_flower_shows_our_tasks_workers_and_metrics_by_name(flower, workers, state, page_server):
    """With real workers and a real task, Flower's /api/tasks, /api/workers and /metrics name our tasks."""
    out = json.loads(
        ingest("submit", f"{page_server}/articles/story-9.html", "--json", env=workers.env).stdout
    )
    assert wait_terminal(state, out["batch"])["stored"] == 1

    tasks = _until(
        lambda: json.loads(http_get(flower + "/api/tasks", auth=AUTH)[1]),
        lambda t: (
            {v.get("name") for v in t.values() if v.get("state") == "SUCCESS"}
            >= {"ingest.fetch", "ingest.process"}
        ),
    )
    assert {v["name"] for v in tasks.values()} == {"ingest.fetch", "ingest.process"}
    workers_seen = _until(
        lambda: json.loads(http_get(flower + "/api/workers?refresh=1", auth=AUTH)[1]),
        lambda w: len(w) >= 2,
    )
    assert {name.split("-")[0] for name in workers_seen} == {"fetch", "process"}
    status, metrics = http_get(flower + "/metrics", auth=AUTH)
    assert status == 200
    assert 'task="ingest.fetch"' in metrics and 'task="ingest.process"' in metrics


def test_flower_metrics_and_api_refuse_requests_without_credentials(flower):
    """Basic auth covers /metrics too (Flower alone leaves it open), as well as /api/workers."""
    assert http_get(flower + "/metrics")[0] == 401
    assert http_get(flower + "/api/workers")[0] == 401
    assert http_get(flower + "/metrics", auth="ops:wrong")[0] == 401


def test_flower_beyond_loopback_without_auth_is_refused(ingest_env):
    """ingest flower --address 0.0.0.0 without INGEST_FLOWER_BASIC_AUTH exits with a usage error."""
    proc = ingest("flower", "--address", "0.0.0.0", env=ingest_env, check=False)
    assert proc.returncode == 2
    assert "INGEST_FLOWER_BASIC_AUTH" in proc.stderr


def test_persistent_state_is_passed_to_flower_when_a_db_is_set():
    """A db path turns on Flower's persistent mode with that file."""
    argv = flower_argv(address="127.0.0.1", port=5555, basic_auth="", db="/var/lib/flower/db")
    assert "--persistent=True" in argv and "--db=/var/lib/flower/db" in argv


def test_flower_counts_a_failed_url_as_a_failed_task_with_reason_and_url(flower, workers, state, page_server):
    """A URL that ends failed:http_404 is a FAILURE in Flower; its exception names state, reason and URL;
    a stored URL's tasks are SUCCESS with the outcome as their result."""
    missing, good = f"{page_server}/articles/no-such-page.html", f"{page_server}/articles/story-11.html"
    out = json.loads(ingest("submit", missing, good, "--json", env=workers.env).stdout)
    assert wait_terminal(state, out["batch"])["failed_reasons"] == {"http_404": 1}

    tasks = _until(
        lambda: json.loads(http_get(flower + "/api/tasks", auth=AUTH)[1]),
        lambda t: (
            any(v.get("state") == "FAILURE" for v in t.values())
            and any(v.get("name") == "ingest.process" and v.get("state") == "SUCCESS" for v in t.values())
        ),
    )
    (failed,) = [v for v in tasks.values() if v.get("state") == "FAILURE"]
    assert failed["name"] == "ingest.fetch"
    assert "failed:http_404" in failed["exception"] and missing in failed["exception"]
    (stored,) = [v for v in tasks.values() if v.get("name") == "ingest.process"]
    assert "stored" in stored["result"] and good in stored["result"]
