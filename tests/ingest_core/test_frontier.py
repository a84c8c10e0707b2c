"""The frontier's transitions on a real Redis: enqueue, dispatch, start, handoff, retry, expire, adoption,
force, cancel and retry of failed URLs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import redis

from ingest_core.canonical import url_id
from ingest_core.frontier import Frontier
from ingest_core.state import StateStore, summarize

P = "fr"
T = TypeVar("T")


def _job(host: str, path: str = "1") -> dict[str, Any]:
    url = f"https://{host}/{path}"
    return {"url": url, "id": url_id(url), "host": host, "source": "test", "hints": {}}


def _store(client: redis.Redis, **kw: Any) -> StateStore:
    return StateStore(client, prefix=P, frontier=Frontier(client, prefix=P, **kw))


def _poll(fn: Callable[[], T], timeout: float = 10.0) -> T:
    """Call ``fn`` until it returns something truthy (a few ms apart); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def _token(client: redis.Redis, uid: str) -> str:
    return client.hget(f"{P}:urls", bytes.fromhex(uid)).decode().removeprefix("q:")


@pytest.fixture
def store(redis_client: redis.Redis) -> StateStore:
    """A state store whose frontier has no host interval (a host may be dispatched again at once)."""
    return _store(redis_client, host_interval=0)


def test_dispatch_gives_one_url_per_host_and_keeps_the_host_interval(redis_client) -> None:
    """One URL per ready host per call; right after, a dispatched host gives nothing (even for a URL
    enqueued since), while a host not fetched yet proceeds."""
    fr = _store(redis_client, host_interval=60).frontier
    fr.enqueue([_job("a.example", "1"), _job("a.example", "2"), _job("b.example", "1")], batch="b")
    jobs, _ = fr.dispatch(budget=10, capacity=10)
    assert sorted(j["host"] for j in jobs) == ["a.example", "b.example"]
    assert fr.dispatch(budget=10, capacity=10)[0] == []
    fr.enqueue([_job("b.example", "2"), _job("c.example", "1")], batch="b")
    jobs, next_in = fr.dispatch(budget=10, capacity=10)
    assert [j["url"] for j in jobs] == ["https://c.example/1"]
    assert next_in is not None and next_in > 0
    assert fr.stats()["waiting"] == 2  # a/2 and b/2 wait for their host's next slot


def test_capacity_bounds_the_fetch_leases(store) -> None:
    """No more fetch leases than the fleet's capacity; a lease that ends frees a slot."""
    fr = store.frontier
    fr.enqueue([_job(f"h{i}.example") for i in range(5)], batch="b")
    jobs, _ = fr.dispatch(budget=10, capacity=2)
    assert len(jobs) == 2
    assert fr.dispatch(budget=10, capacity=2)[0] == []
    assert (fr.stats()["fetching"], fr.stats()["waiting"]) == (2, 3)
    assert fr.handoff(jobs[0], b"page")
    assert len(fr.dispatch(budget=10, capacity=2)[0]) == 1


def test_start_with_a_stale_generation_is_refused(redis_client) -> None:
    """Once a lost lease is dispatched again, the old task's start() is False and the new one's True."""
    fr = _store(redis_client, host_interval=0, fetch_lease=0.01).frontier
    fr.enqueue([_job("a.example")], batch="b")
    [old], _ = fr.dispatch(budget=1, capacity=10)

    def redispatched() -> list[dict[str, Any]]:
        fr.expire("f", queue_empty=True)  # never started, but nothing waits in the broker queue
        return fr.dispatch(budget=1, capacity=10)[0]

    [new] = _poll(redispatched)
    assert new["id"] == old["id"] and new["token"] == old["token"] and new["gen"] != old["gen"]
    assert fr.start(old, lease=60) is False
    assert fr.start(new, lease=60) is True


def test_handoff_keeps_the_page_and_moves_the_lease_to_process(store, redis_client) -> None:
    """After handoff the page is under its claim-check key and the URL holds a process lease, not a fetch
    one; the process task may start with the same job."""
    fr = store.frontier
    fr.enqueue([_job("a.example")], batch="b")
    [job], _ = fr.dispatch(budget=1, capacity=10)
    assert fr.start(job, lease=60)
    assert fr.handoff(job, b"<html>the page</html>")
    assert fr.page(job["id"]) == b"<html>the page</html>"
    stats = fr.stats()
    assert (stats["fetching"], stats["processing"]) == (0, 1)
    assert redis_client.hget(f"{P}:stage", bytes.fromhex(job["id"])) == f"p:{job['gen']}".encode()
    assert fr.start(job, lease=60)


def test_retry_later_holds_the_url_until_its_delay_is_over(store) -> None:
    """A retried URL waits in retry; dispatch gives it back (same claim, its attempts) once its delay is
    over, and not one whose delay is still running."""
    fr = store.frontier
    fr.enqueue([_job("soon.example"), _job("later.example")], batch="b")
    jobs, _ = fr.dispatch(budget=10, capacity=10)
    by_host = {j["host"]: j for j in jobs}
    assert fr.retry_later(by_host["later.example"], 3600, attempts=1)
    assert fr.retry_later(by_host["soon.example"], 0.002, attempts=1)
    assert (fr.stats()["retrying"], fr.stats()["fetching"], fr.stats()["waiting"]) == (2, 0, 0)
    [again] = _poll(lambda: fr.dispatch(budget=10, capacity=10)[0])
    assert (again["host"], again["attempts"]) == ("soon.example", 1)
    assert again["token"] == by_host["soon.example"]["token"]
    assert fr.stats()["retrying"] == 1


def test_expired_started_fetch_lease_is_queued_again(redis_client) -> None:
    """A started fetch whose lease ran out goes back to its host's queue and is dispatched again."""
    fr = _store(redis_client, host_interval=0, fetch_lease=0.01).frontier
    fr.enqueue([_job("a.example")], batch="b")
    [job], _ = fr.dispatch(budget=1, capacity=10)
    assert fr.start(job, lease=0.01)

    def requeued() -> bool:
        fr.expire("f", queue_empty=False)
        return fr.stats()["waiting"] == 1

    _poll(requeued)
    stats = fr.stats()
    assert (stats["fetching"], stats["leases_expired"]) == (0, 1)
    [again], _ = fr.dispatch(budget=1, capacity=10)
    assert again["id"] == job["id"] and again["gen"] != job["gen"]


def test_never_started_fetch_lease_is_kept_while_the_queue_is_not_empty(redis_client) -> None:
    """A fetch lease whose task never started may be waiting behind a backlog: with queue_empty=False it is
    not taken back, even once a started lease dispatched with it has expired."""
    fr = _store(redis_client, host_interval=0, fetch_lease=0.01).frontier
    fr.enqueue([_job("started.example"), _job("queued.example")], batch="b")
    jobs, _ = fr.dispatch(budget=10, capacity=10)
    by_host = {j["host"]: j for j in jobs}
    assert fr.start(by_host["started.example"], lease=0.01)

    def started_one_expired() -> bool:
        fr.expire("f", queue_empty=False)
        return fr.stats()["waiting"] == 1

    _poll(started_one_expired)
    queued = by_host["queued.example"]
    assert fr.stats()["fetching"] == 1 and fr.stats()["leases_expired"] == 1
    assert redis_client.zscore(f"{P}:lease:f", bytes.fromhex(queued["id"])) is not None
    assert fr.start(queued, lease=60)  # its task, starting late, still holds the URL


def test_pending_url_submitted_again_is_adopted(store) -> None:
    """A URL still pending, submitted by another batch, is queued once; when it ends both batches count it."""
    fr = store.frontier
    first = fr.enqueue([_job("a.example")], batch="one")
    second = fr.enqueue([_job("a.example")], batch="two")
    assert (len(first.accepted), len(second.accepted), second.adopted) == (1, 0, first.accepted)
    assert fr.stats()["waiting"] == 1
    [job], _ = fr.dispatch(budget=10, capacity=10)
    assert job["batch"] == "one"
    assert store.finish(job["id"], job["token"], "stored", batch=job["batch"], url=job["url"])
    for batch in ("one", "two"):
        s = summarize(store.counters(batch))
        assert (s["submitted"], s["stored"], s["pending"]) == (1, 1, 0), batch
    assert store.counters("two")["adopted"] == 1
    s = summarize(store.counters())
    assert (s["submitted"], s["stored"], s["pending"]) == (1, 1, 0)


def test_a_repeat_in_the_same_batch_is_a_duplicate_not_an_adoption(store) -> None:
    """The same batch enqueueing a pending URL again (a later chunk) counts a duplicate, so the batch still
    ends with nothing pending."""
    fr = store.frontier
    fr.enqueue([_job("a.example")], batch="one")
    again = fr.enqueue([_job("a.example")], batch="one")
    assert (again.accepted, again.adopted, again.duplicates) == ([], [], 1)
    [job], _ = fr.dispatch(budget=10, capacity=10)
    store.finish(job["id"], job["token"], "stored", batch="one")
    s = summarize(store.counters("one"))
    assert (s["submitted"], s["stored"], s["duplicate"], s["pending"]) == (2, 1, 1, 0)


def test_force_on_a_pending_url_supersedes_its_task(store, redis_client) -> None:
    """force on a pending URL queues it again under a new token: the task holding the old one can no longer
    start, hand off or finish; the new one does, and both batches count the end."""
    fr = store.frontier
    fr.enqueue([_job("a.example")], batch="one")
    [old], _ = fr.dispatch(budget=10, capacity=10)
    assert fr.start(old, lease=60)
    forced = fr.enqueue([_job("a.example")], batch="two", force=True)
    assert forced.adopted == [old["id"]]
    assert _token(redis_client, old["id"]) != old["token"]
    assert fr.start(old, lease=60) is False and fr.handoff(old, b"x") is False
    [new], _ = fr.dispatch(budget=10, capacity=10)
    assert new["id"] == old["id"] and new["token"] != old["token"]
    assert fr.start(new, lease=60) is True
    assert store.finish(old["id"], old["token"], "stored", batch="one") is False
    assert store.finish(new["id"], new["token"], "stored", batch=new["batch"]) is True
    for batch in ("one", "two"):
        assert summarize(store.counters(batch))["pending"] == 0, batch


def test_cancel_ends_pending_urls_as_skipped_cancelled(store) -> None:
    """cancel(batch) ends that batch's pending URLs (waiting or leased) as skipped:cancelled; counts add
    up, another batch's URL is left pending, and a leased task can no longer start."""
    fr = store.frontier
    fr.enqueue([_job("a.example", "1"), _job("a.example", "2"), _job("b.example", "1")], batch="one")
    fr.enqueue([_job("c.example", "1")], batch="two")
    [leased], _ = fr.dispatch(budget=1, capacity=10)
    assert leased["batch"] == "one"  # its hosts were ready first
    assert store.cancel("one") == 3
    s = summarize(store.counters("one"))
    assert (s["submitted"], s["skipped"], s["pending"]) == (3, 3, 0)
    assert s["skipped_reasons"] == {"cancelled": 3}
    assert summarize(store.counters("two"))["pending"] == 1
    assert summarize(store.counters())["pending"] == 1
    assert fr.pending_ids() == [_job("c.example", "1")["id"]]
    assert fr.start(leased, lease=60) is False
    stats = fr.stats()
    assert stats["waiting"] + stats["fetching"] == 1


def test_retry_failed_claims_only_failed_urls(store) -> None:
    """retry_failed mode queues failed URLs only; they leave failed (and its reason) at once, and the
    fleet's submitted count is unchanged."""
    fr = store.frontier
    jobs = [_job("f1.example"), _job("f2.example"), _job("ok.example")]
    fr.enqueue(jobs, batch="one")
    leased, _ = fr.dispatch(budget=10, capacity=10)
    ends = {
        "f1.example": ("failed", "timeout"),
        "f2.example": ("failed", "http_503"),
        "ok.example": ("stored", ""),
    }
    for job in leased:
        how, reason = ends[job["host"]]
        store.finish(job["id"], job["token"], how, reason, batch="one", url=job["url"])
    assert summarize(store.counters())["failed"] == 2
    done = fr.enqueue(jobs, batch="retry", retry_failed=True)
    assert sorted(done.accepted) == sorted(j["id"] for j in jobs[:2])
    s = summarize(store.counters())
    assert (s["submitted"], s["stored"], s["failed"], s["pending"]) == (3, 1, 0, 2)
    assert s["failed_reasons"] == {"http_503": 0, "timeout": 0}
    assert summarize(store.counters("retry"))["submitted"] == 2
    assert [store.url_state(j["id"]) for j in jobs] == ["queued", "queued", "stored"]
    assert store.dead_letters() == []
    assert fr.stats()["waiting"] == 2
