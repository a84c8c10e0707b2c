"""Broker portability: the fleet on RabbitMQ (state still in Redis), as large fleets run it.

Uses ``INGEST_TEST_AMQP_URL``; under ``INGEST_TEST_REQUIRE_SERVICES=1`` it defaults to the local RabbitMQ and
an unreachable broker fails the test.
"""

from __future__ import annotations

import json
import os

import pytest

from ingest_core.state import StateStore
from tests.conftest import Workers, ingest
from tests.worker.ops.conftest import wait_terminal
from worker.ops.queues import queue_depths

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """A reachable RabbitMQ URL."""
    from kombu import Connection

    required = os.environ.get("INGEST_TEST_REQUIRE_SERVICES") == "1"
    url = os.environ.get("INGEST_TEST_AMQP_URL") or (LOCAL_AMQP if required else "")
    if not url:
        pytest.skip(f"set INGEST_TEST_AMQP_URL (e.g. {LOCAL_AMQP}) to run the RabbitMQ tests")
    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(f"RabbitMQ at {url} is unreachable: {exc}")
    return url


def test_fleet_on_rabbitmq_stores_retries_and_reports_queue_depths(
    ingest_env, amqp_url, page_server, tmp_path
):
    """With an amqp:// broker, URLs are stored, a failed one is retried, and queue depths are readable."""
    env = {**ingest_env, "INGEST_BROKER_URL": amqp_url, "INGEST_REDIS_URL": ingest_env["INGEST_BROKER_URL"]}
    state = StateStore.from_url(env["INGEST_REDIS_URL"], prefix=env["INGEST_KEY_PREFIX"])
    urls = [f"{page_server}/articles/story-{n}.html" for n in range(30, 33)] + [
        f"{page_server}/articles/nope"
    ]
    workers = Workers(env, tmp_path / "workers.log")
    try:
        out = json.loads(ingest("submit", *urls, "--json", env=env).stdout)
        s = wait_terminal(state, out["batch"])
        assert (s["stored"], s["failed_reasons"]) == (3, {"http_404": 1})
        retry = json.loads(ingest("retry-failed", "--json", env=env).stdout)
        assert retry["requeued"] == 1
        assert wait_terminal(state, retry["batch"])["failed"] == 1
        assert set(queue_depths(amqp_url)) == {"fetch", "process"}
    finally:
        workers.stop()
