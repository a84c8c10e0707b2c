"""The dispatcher on a real Redis: backpressure, capacity, and taking back lost leases."""

from __future__ import annotations

import time
import uuid

from ingest_core.frontier import Frontier
from ingest_core.state import StateStore
from producers import submit
from worker.dispatch import Dispatcher


def _setup(redis_client, **frontier_kw):
    prefix = f"d{uuid.uuid4().hex[:8]}"
    frontier = Frontier(redis_client, prefix=prefix, host_interval=0, **frontier_kw)
    state = StateStore(redis_client, prefix=prefix, frontier=frontier)
    return state, frontier


def _dispatcher(frontier, depths, sent, *, concurrency=4, process_queue_max=10):
    return Dispatcher(
        frontier,
        worker="w1",
        concurrency=concurrency,
        publish_fetch=sent.extend,
        publish_process=sent.extend,
        queue_depth=lambda q: depths[q],
        process_queue_max=process_queue_max,
    )


def test_dispatch_pauses_while_the_process_queue_is_over_its_bound(redis_client):
    """Above process_queue_max nothing is dispatched and the pause is visible; below it dispatch resumes."""
    state, frontier = _setup(redis_client)
    submit([f"https://h{n}.example/a" for n in range(3)], state=state)
    depths, sent = {"fetch": 0, "process": 11}, []
    d = _dispatcher(frontier, depths, sent)
    assert d.round()[0] == 0 and sent == []
    assert "process queue 11 > 10" in frontier.stats()["paused"]
    depths["process"] = 3
    assert d.round()[0] == 3
    assert {j["url"] for j in sent} == {f"https://h{n}.example/a" for n in range(3)}
    assert frontier.stats()["paused"] is None


def test_dispatch_keeps_leased_fetches_within_the_fleet_capacity(redis_client):
    """With concurrency 2 and five ready hosts, two URLs are leased; more only as fetches hand off."""
    state, frontier = _setup(redis_client)
    submit([f"https://h{n}.example/a" for n in range(5)], state=state)
    depths, sent = {"fetch": 0, "process": 0}, []
    d = _dispatcher(frontier, depths, sent, concurrency=2)
    assert d.round()[0] == 2
    assert d.round()[0] == 0  # both leases still held
    job = sent[0]
    assert frontier.start(job, 60) and frontier.handoff(job, b"page")
    assert d.round()[0] == 1


def test_sweep_publishes_a_lost_process_task_again_with_a_new_generation(redis_client):
    """A started process task whose lease ran out is published again; the old copy can no longer start."""
    state, frontier = _setup(redis_client, process_lease=0.001)
    submit(["https://one.example/a"], state=state)
    depths, sent = {"fetch": 0, "process": 0}, []
    d = _dispatcher(frontier, depths, sent)
    d.round()
    (job,) = sent
    assert frontier.start(job, 60) and frontier.handoff(job, b"page")
    assert frontier.start(job, 0.001)  # the process task starts, then its worker dies
    sent.clear()
    deadline = time.monotonic() + 10
    while not sent:
        d.sweep()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (again,) = sent
    assert again["id"] == job["id"] and again["gen"] != job["gen"]
    assert not frontier.start(job, 60)  # the old generation is gone
    assert frontier.start(again, 60)
    assert frontier.page(job["id"]) == b"page"  # the page was kept: no second fetch


def test_urls_whose_publish_failed_go_back_to_the_frontier_at_once(redis_client):
    """A broker that refuses the publish does not leave the URLs leased until their lease runs out."""
    state, frontier = _setup(redis_client)
    submit(["https://a.example/1", "https://b.example/1"], state=state)

    def refuse(jobs):
        raise ConnectionError("broker down")

    d = Dispatcher(
        frontier,
        worker="w1",
        concurrency=4,
        publish_fetch=refuse,
        publish_process=refuse,
        queue_depth=lambda q: 0,
    )
    try:
        d.round()
    except ConnectionError:
        pass
    s = frontier.stats()
    assert (s["fetching"], s["waiting"]) == (0, 2)
    sent: list = []
    assert _dispatcher(frontier, {"fetch": 0, "process": 0}, sent).round()[0] == 2


def test_a_running_task_renews_its_lease_and_a_dead_one_is_taken_back(redis_client):
    """renew() keeps a started lease alive; once renewals stop, the sweep publishes the task again."""
    state, frontier = _setup(redis_client, process_lease=0.001)
    submit(["https://beat.example/a"], state=state)
    sent: list = []
    d = _dispatcher(frontier, {"fetch": 0, "process": 0}, sent)
    d.round()
    (job,) = sent
    assert frontier.start(job, 60) and frontier.handoff(job, b"page") and frontier.start(job, 60)
    assert frontier.renew(job, 60)  # alive: a sweep takes nothing back
    sent.clear()
    assert d.sweep() == 0 and sent == []
    assert frontier.renew(job, 0.001)  # the last beat of a worker that then dies
    deadline = time.monotonic() + 10
    while not sent:
        d.sweep()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not frontier.renew(job, 60)  # the old generation cannot renew any more
