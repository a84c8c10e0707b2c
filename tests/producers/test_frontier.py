"""The fleet-wide frontier through ``submit()``: atomic claims, recrawl TTL, failed URLs, --force."""

from __future__ import annotations

import threading
import time

import redis

from ingest_core.canonical import canonicalize, url_id
from ingest_core.state import StateStore, summarize
from producers import submit
from tests.producers.conftest import frontier_jobs, host_queue, waiting


def _finish_all(state: StateStore, client: redis.Redis, how: str, reason: str = "") -> None:
    jobs = frontier_jobs(client, state.prefix)
    assert jobs, "nothing pending to finish"
    for job in jobs:
        assert state.finish(job["id"], job["token"], how, reason, batch=job["batch"], url=job["url"])


def test_two_producers_submitting_the_same_urls_queue_each_once(state, redis_client) -> None:
    """Two threads submitting the same 3,000 URLs at the same moment queue 3,000 jobs in all."""
    urls = [f"https://race.example/{i}" for i in range(3000)]
    results = []
    start = threading.Barrier(2)

    def producer() -> None:
        start.wait()
        results.append(submit(urls, state=state, source="race"))

    threads = [threading.Thread(target=producer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.accepted for r in results) == 3000
    # the second claim of each URL finds it pending: it is adopted by the other batch, never queued again
    assert sum(r.adopted for r in results) == 3000 and sum(r.duplicates for r in results) == 0
    queue = host_queue(redis_client, state.prefix, "race.example")
    assert len(queue) == 3000 and len(set(queue)) == 3000
    assert waiting(redis_client, state.prefix) == 3000


def test_duplicates_inside_one_input_are_queued_once(state, redis_client) -> None:
    """10,000 copies of one URL (in several spellings) queue one job; the rest count as duplicates."""
    spellings = ["https://dup.example/a", "HTTPS://DUP.example/a#x", "https://dup.example/a?utm_source=n"]
    result = submit((spellings[i % 3] for i in range(10_000)), state=state)
    assert (result.accepted, result.duplicates, result.adopted) == (1, 9_999, 0)
    assert len(host_queue(redis_client, state.prefix, "dup.example")) == 1
    assert waiting(redis_client, state.prefix) == 1
    # repeats in later chunks are duplicates of this batch, not adoptions: once the URL ends, none pending
    _finish_all(state, redis_client, "stored")
    assert summarize(state.counters(result.batch))["pending"] == 0
    assert summarize(state.counters())["pending"] == 0


def test_stored_url_is_not_queued_again(state, redis_client) -> None:
    """A URL that reached a terminal state is a duplicate when submitted again (no recrawl TTL)."""
    submit(["https://seen.example/1"], state=state)
    _finish_all(state, redis_client, "stored")
    again = submit(["https://seen.example/1"], state=state)
    assert (again.accepted, again.duplicates, waiting(redis_client, state.prefix)) == (0, 1, 0)
    assert frontier_jobs(redis_client, state.prefix) == []


def test_claim_expires_after_the_recrawl_ttl(redis_client) -> None:
    """With a 1 s recrawl TTL, a stored URL is a duplicate at once and queued again once the TTL passed."""
    state = StateStore(redis_client, prefix="ttl", recrawl_ttl=1)
    submit(["https://ttl.example/1"], state=state)
    _finish_all(state, redis_client, "stored")
    assert submit(["https://ttl.example/1"], state=state).duplicates == 1
    time.sleep(1.1)
    assert submit(["https://ttl.example/1"], state=state).accepted == 1
    assert waiting(redis_client, state.prefix) == 1


def test_failed_url_can_be_submitted_again(state, redis_client) -> None:
    """A URL that failed (e.g. timed out after its retries) is not 'seen' forever: it is queued again."""
    submit(["https://flaky.example/1"], state=state)
    _finish_all(state, redis_client, "failed", "timeout")
    assert waiting(redis_client, state.prefix) == 0
    again = submit(["https://flaky.example/1"], state=state)
    assert (again.accepted, waiting(redis_client, state.prefix)) == (1, 1)


def test_force_queues_a_stored_url_again(state, redis_client) -> None:
    """force=True queues a URL whatever its state; one still pending is queued again under a new claim
    (adopted, not accepted), so it is never twice in flight: the old claim can no longer finish."""
    first = submit(["https://force.example/1"], state=state)
    [old] = frontier_jobs(redis_client, state.prefix)
    forced = submit(["https://force.example/1"], state=state, force=True)
    assert (forced.accepted, forced.adopted) == (0, 1)
    [new] = frontier_jobs(redis_client, state.prefix)
    assert new["token"] != old["token"] and not state.is_pending(old["id"], old["token"])
    assert waiting(redis_client, state.prefix) == 1
    assert state.finish(old["id"], old["token"], "stored", batch=old["batch"]) is False
    _finish_all(state, redis_client, "stored")
    assert state.counters(first.batch)["stored"] == 1 and state.counters(forced.batch)["stored"] == 1
    again = submit(["https://force.example/1"], state=state, force=True)
    assert (again.accepted, waiting(redis_client, state.prefix)) == (1, 1)


def test_pending_url_submitted_again_is_adopted(state, redis_client) -> None:
    """A URL still pending from an earlier batch is not queued twice; the later batch counts its end."""
    first = submit(["https://adopt.example/1"], state=state)
    second = submit(["https://adopt.example/1"], state=state)
    assert (second.accepted, second.adopted, second.duplicates) == (0, 1, 0)
    assert waiting(redis_client, state.prefix) == 1
    _finish_all(state, redis_client, "stored")
    assert state.counters(first.batch)["stored"] == 1 and state.counters(second.batch)["stored"] == 1


def test_frontier_keeps_hash_keys_not_urls(state, redis_client) -> None:
    """The claim hash stores 16 raw bytes per URL (the id), never the URL text; once the URL ends, no
    trace of its text is left in the frontier."""
    url = "https://memory.example/a-rather-long-article-path/with/many/segments?and=query"
    submit([url], state=state)
    fields = redis_client.hkeys(state.key("urls"))
    assert fields == [bytes.fromhex(url_id(canonicalize(url)))] and len(fields[0]) == 16
    _finish_all(state, redis_client, "stored")
    assert redis_client.hlen(state.key("jobs")) == 0
    for key in redis_client.keys(f"{state.prefix}:*"):
        assert b"a-rather-long" not in b" ".join(_contents(redis_client, key)), key


def _contents(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"hash":
        return [b for kv in client.hgetall(key).items() for b in kv]
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"zset":
        return client.zrange(key, 0, -1)
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"stream":
        return [v for _, fields in client.xrange(key) for v in fields.values()]
    return [client.get(key) or b""]
