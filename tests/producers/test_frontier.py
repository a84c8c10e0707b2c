"""The fleet-wide frontier through ``submit()``: atomic claims, recrawl TTL, failed URLs, --force."""

from __future__ import annotations

import threading
import time

import redis

from ingest_core.canonical import canonicalize, url_id
from ingest_core.state import StateStore
from producers import submit
from tests.producers.conftest import queued_jobs


def _finish_all(state: StateStore, client: redis.Redis, how: str, reason: str = "") -> None:
    for job in queued_jobs(client):
        state.finish(job["id"], job["token"], how, reason, batch=job["batch"], url=job["url"])
    client.delete("fetch")


def test_two_producers_submitting_the_same_urls_queue_each_once(state, celery_app, redis_client) -> None:
    """Two threads submitting the same 3,000 URLs at the same moment queue 3,000 messages in all."""
    urls = [f"https://race.example/{i}" for i in range(3000)]
    results = []
    start = threading.Barrier(2)

    def producer() -> None:
        start.wait()
        results.append(submit(urls, state=state, app=celery_app, source="race"))

    threads = [threading.Thread(target=producer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.accepted for r in results) == 3000
    assert sum(r.duplicates for r in results) == 3000
    assert redis_client.llen("fetch") == 3000
    assert len({job["id"] for job in queued_jobs(redis_client)}) == 3000


def test_duplicates_inside_one_input_are_queued_once(state, celery_app, redis_client) -> None:
    """10,000 copies of one URL (in several spellings) queue one message; the rest count as duplicates."""
    spellings = ["https://dup.example/a", "HTTPS://DUP.example/a#x", "https://dup.example/a?utm_source=n"]
    result = submit((spellings[i % 3] for i in range(10_000)), state=state, app=celery_app)
    assert (result.accepted, result.duplicates, redis_client.llen("fetch")) == (1, 9_999, 1)


def test_stored_url_is_not_queued_again(state, celery_app, redis_client) -> None:
    """A URL that reached a terminal state is a duplicate when submitted again (no recrawl TTL)."""
    submit(["https://seen.example/1"], state=state, app=celery_app)
    _finish_all(state, redis_client, "stored")
    again = submit(["https://seen.example/1"], state=state, app=celery_app)
    assert (again.accepted, again.duplicates, redis_client.llen("fetch")) == (0, 1, 0)


def test_claim_expires_after_the_recrawl_ttl(redis_client, celery_app) -> None:
    """With a 1 s recrawl TTL, a stored URL is a duplicate at once and queued again once the TTL passed."""
    state = StateStore(redis_client, prefix="ttl", recrawl_ttl=1)
    submit(["https://ttl.example/1"], state=state, app=celery_app)
    _finish_all(state, redis_client, "stored")
    assert submit(["https://ttl.example/1"], state=state, app=celery_app).duplicates == 1
    time.sleep(1.1)
    assert submit(["https://ttl.example/1"], state=state, app=celery_app).accepted == 1


def test_failed_url_can_be_submitted_again(state, celery_app, redis_client) -> None:
    """A URL that failed (e.g. timed out after its retries) is not 'seen' forever: it is queued again."""
    submit(["https://flaky.example/1"], state=state, app=celery_app)
    _finish_all(state, redis_client, "failed", "timeout")
    again = submit(["https://flaky.example/1"], state=state, app=celery_app)
    assert (again.accepted, redis_client.llen("fetch")) == (1, 1)


def test_force_queues_a_stored_url_again(state, celery_app, redis_client) -> None:
    """force=True queues a URL whatever its state, except one still queued (never twice in flight)."""
    submit(["https://force.example/1"], state=state, app=celery_app)
    assert submit(["https://force.example/1"], state=state, app=celery_app, force=True).accepted == 0
    _finish_all(state, redis_client, "stored")
    assert submit(["https://force.example/1"], state=state, app=celery_app, force=True).accepted == 1


def test_frontier_keeps_hash_keys_not_urls(state, celery_app, redis_client) -> None:
    """The frontier stores 16 raw bytes per URL (the id), never the URL text."""
    url = "https://memory.example/a-rather-long-article-path/with/many/segments?and=query"
    submit([url], state=state, app=celery_app)
    fields = redis_client.hkeys(state.key("urls"))
    assert fields == [bytes.fromhex(url_id(canonicalize(url)))] and len(fields[0]) == 16
