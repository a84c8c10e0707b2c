"""Lost messages are sent again: in-flight tracking and the sweeper, unit and through a real worker."""

from __future__ import annotations

import json
import time

from ingest_core.canonical import url_id
from ingest_core.state import StateStore
from tests.conftest import Workers, ingest
from worker.reconcile import Reconciler


def _tracked_job(state: StateStore, url: str, batch: str = "b") -> dict:
    claim = state.claim([url_id(url)], batch=batch)[0]
    job = {
        "url": url,
        "id": claim.url_id,
        "token": claim.token,
        "batch": batch,
        "source": "test",
        "hints": {},
    }
    state.track([job])
    return job


def test_untouched_job_is_sent_again_once_queues_are_empty(redis_client):
    """A job nothing touched for redeliver_after seconds is re-sent, once, when both queues are empty."""
    state = StateStore(redis_client, redeliver_after=0.2)
    job = _tracked_job(state, "https://example.com/lost")
    sent: list[dict] = []
    sweeper = Reconciler(state, sent.append, lambda: 0, interval=0.05)
    assert sweeper.sweep() == 0  # not stale yet
    time.sleep(0.3)
    assert sweeper.sweep() == 1 and sent == [job]
    time.sleep(0.06)
    assert sweeper.sweep() == 0  # sending touched it: not again before another redeliver_after


def test_nothing_is_resent_while_a_queue_holds_messages(redis_client):
    """A job may still be waiting behind a backlog: with messages queued the sweeper sends nothing."""
    state = StateStore(redis_client, redeliver_after=0.1)
    _tracked_job(state, "https://example.com/waiting")
    time.sleep(0.2)
    sent: list[dict] = []
    assert Reconciler(state, sent.append, lambda: 7, interval=0.05).sweep() == 0 and sent == []


def test_finishing_a_job_forgets_it(redis_client):
    """The finish script removes the in-flight entry, so an ended URL is never sent again."""
    state = StateStore(redis_client, redeliver_after=0.1)
    job = _tracked_job(state, "https://example.com/done")
    state.finish(job["id"], job["token"], "stored", batch="b")
    time.sleep(0.2)
    assert state.stale_jobs() == []
    assert redis_client.hlen(state.key("inflight")) == 0


def test_touch_pushes_redelivery_back(redis_client):
    """A task working on a job (or deferring it) touches it, and the job is not stale meanwhile."""
    state = StateStore(redis_client, redeliver_after=0.2)
    job = _tracked_job(state, "https://example.com/busy")
    time.sleep(0.15)
    state.touch(job["id"], later=1.0)
    time.sleep(0.15)
    assert state.stale_jobs() == []


def test_one_sweep_per_interval_across_processes(redis_client):
    """Two sweepers sharing Redis: only the one holding the interval's lock sends."""
    state = StateStore(redis_client, redeliver_after=0.1)
    _tracked_job(state, "https://example.com/once")
    time.sleep(0.2)
    sent: list[dict] = []
    first = Reconciler(state, sent.append, lambda: 0, interval=5)
    second = Reconciler(StateStore(redis_client, redeliver_after=0.1), sent.append, lambda: 0, interval=5)
    assert first.sweep() + second.sweep() == 1
    assert len(sent) == 1


def test_worker_recovers_a_job_whose_message_was_lost(ingest_env, page_server, tmp_path, redis_client):
    """A claimed, tracked URL whose message never reached the broker is re-sent by a worker and stored."""
    env = {**ingest_env, "INGEST_REDELIVER_AFTER": "2"}
    state = StateStore(redis_client, prefix=env["INGEST_KEY_PREFIX"], redeliver_after=2)
    url = f"{page_server}/articles/story-7.html"
    job = _tracked_job(state, url, batch="lost")  # claimed and tracked, but no message sent: "lost"
    workers = Workers(env, tmp_path / "workers.log")
    try:
        deadline = time.monotonic() + 60
        while (stats := json.loads(ingest("stats", "--json", "--batch", "lost", env=env).stdout))["pending"]:
            assert time.monotonic() < deadline, f"the lost job was never sent again: {stats}"
            time.sleep(0.5)
    finally:
        workers.stop()
    assert stats["stored"] == 1
    assert state.url_state(job["id"]) == "stored"
