"""``submit()``: what reaches the frontier, hints, rejections with reasons, streaming, Redis down."""

from __future__ import annotations

import itertools

import pytest
import redis

from ingest_core.state import StateStore
from producers import REJECTED_KEPT, BrokerUnavailable, submit
from tests.producers.conftest import frontier_jobs, host_queue, waiting


def test_accepted_urls_are_queued_as_fetch_jobs(state, redis_client) -> None:
    """Each accepted URL is one job in its host's frontier queue, with its canonical URL, id, token (its
    claim), batch and source."""
    result = submit(["https://q.example/b?utm_source=x", "https://q.example/a"], state=state, source="test")
    jobs = sorted(frontier_jobs(redis_client, state.prefix), key=lambda j: j["url"])
    assert [j["url"] for j in jobs] == ["https://q.example/a", "https://q.example/b"]
    assert {j["batch"] for j in jobs} == {result.batch} and {j["source"] for j in jobs} == {"test"}
    assert {j["host"] for j in jobs} == {"q.example"}
    assert all(state.is_pending(j["id"], j["token"]) for j in jobs)
    assert sorted(host_queue(redis_client, state.prefix, "q.example")) == sorted(j["id"] for j in jobs)
    assert state.counters(result.batch)["submitted"] == 2 and waiting(redis_client, state.prefix) == 2
    assert redis_client.llen("fetch") == 0  # no broker message at submit: the dispatchers publish tasks


def test_hints_travel_with_their_url(state, redis_client) -> None:
    """Hints given per raw URL arrive in that URL's job."""
    hints = {"https://h.example/1": {"title": "Harbour", "published": "2026-03-02"}}
    submit(["https://h.example/1", "https://h.example/2"], state=state, hints=hints)
    by_url = {j["url"]: j["hints"] for j in frontier_jobs(redis_client, state.prefix)}
    assert by_url == {"https://h.example/1": hints["https://h.example/1"], "https://h.example/2": {}}


def test_rejected_urls_are_counted_with_reasons(state, redis_client) -> None:
    """Bad URLs are refused with reasons, counted in Redis as skipped, and the good ones still go through."""
    urls = ["https://ok.example/1", "ftp://x.example/", "https://u:p@x.example/", "https://x.example/a b", ""]
    result = submit(urls, state=state)
    assert result.accepted == 1 and waiting(redis_client, state.prefix) == 1
    assert [j["url"] for j in frontier_jobs(redis_client, state.prefix)] == ["https://ok.example/1"]
    assert result.rejected_reasons() == {
        "unsupported_scheme": 1,
        "credentials_in_url": 1,
        "whitespace_in_url": 1,
        "empty_url": 1,
    }
    assert state.counters(result.batch)["skipped:credentials_in_url"] == 1


def test_rejections_beyond_the_kept_list_are_still_counted(state) -> None:
    """Past REJECTED_KEPT rejected URLs, only counts grow, so a huge bad input stays in bounded memory."""
    result = submit(itertools.repeat("ftp://x.example/", REJECTED_KEPT + 5), state=state)
    assert len(result.rejected) == REJECTED_KEPT and result.rejected_total == REJECTED_KEPT + 5


def test_a_generator_is_consumed_in_chunks(state, redis_client) -> None:
    """submit() streams its input: progress is reported chunk by chunk while the generator runs."""
    seen: list[int] = []
    submit(
        (f"https://s.example/{i}" for i in range(2500)),
        state=state,
        on_progress=lambda r: seen.append(r.submitted),
    )
    assert seen == [1000, 2000, 2500] and waiting(redis_client, state.prefix) == 2500


def test_unreachable_broker_raises_and_queues_nothing(state, redis_client) -> None:
    """With the state store (Redis) down, submit() raises BrokerUnavailable and claims nothing."""
    dead = StateStore(
        redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1), prefix=state.prefix
    )
    with pytest.raises(BrokerUnavailable):
        submit(["https://down.example/1"], state=dead)
    assert state.url_state("0" * 32) is None and state.counters() == {}
    assert redis_client.keys(f"{state.prefix}:*") == []
