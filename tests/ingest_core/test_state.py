import threading

from ingest_core.canonical import url_id
from ingest_core.frontier import Frontier
from ingest_core.state import StateStore, summarize


def _ids(n: int, tag: str = "") -> list[str]:
    return [url_id(f"https://example.com/{tag}{i}") for i in range(n)]


def test_claim_lets_a_url_through_once(redis_client):
    """A URL claimed once is a duplicate on every later claim, and counted as such."""
    state = StateStore(redis_client)
    ids = _ids(3)
    assert all(state.claim(ids, batch="b1"))
    assert state.claim(ids, batch="b2") == [None, None, None]
    assert summarize(state.counters())["duplicate_reasons"] == {"seen_url": 3}


def test_concurrent_claims_queue_each_url_once(redis_client):
    """Eight threads claiming the same 500 URLs at once get exactly 500 claims between them."""
    state = StateStore(redis_client)
    ids = _ids(500)
    got: list[int] = []

    def claim() -> None:
        got.append(sum(1 for c in state.claim(ids, batch="b") if c))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(got) == 500
    assert state.counters()["submitted"] == 4000


def test_finish_counts_once_under_redelivery(redis_client):
    """Finishing the same claim twice (a re-delivered task) counts one terminal state."""
    state = StateStore(redis_client)
    claim = state.claim(_ids(1), batch="b")[0]
    assert state.finish(claim.url_id, claim.token, "stored", batch="b") is True
    assert state.finish(claim.url_id, claim.token, "stored", batch="b") is False
    s = summarize(state.counters("b"))
    assert (s["submitted"], s["stored"], s["pending"]) == (1, 1, 0)


def test_failed_url_can_be_submitted_again(redis_client):
    """A failed URL is not 'seen' forever: the next submission claims it again."""
    state = StateStore(redis_client)
    claim = state.claim(_ids(1), batch="b")[0]
    state.finish(claim.url_id, claim.token, "failed", "http_503", batch="b", url="https://example.com/0")
    assert state.claim([claim.url_id], batch="b2")[0] is not None
    assert state.failures()[0]["reason"] == "http_503"


def test_counts_add_up_to_submitted(redis_client):
    """submitted == stored + duplicate + skipped + failed + pending, reasons included."""
    state = StateStore(redis_client)
    claims = state.claim(_ids(6), batch="b")
    state.claim(_ids(2), batch="b")  # two seen again
    state.reject(3, "unsupported_scheme", batch="b", urls=["ftp://a", "ftp://b", "ftp://c"])
    for claim, (st, reason) in zip(
        claims,
        [
            ("stored", ""),
            ("stored", ""),
            ("skipped", "not_html"),
            ("failed", "http_404"),
            ("duplicate", "same_text"),
        ],
        strict=False,
    ):
        state.finish(claim.url_id, claim.token, st, reason, batch="b")
    s = summarize(state.counters("b"))
    assert s["submitted"] == 11
    assert (s["stored"], s["duplicate"], s["skipped"], s["failed"], s["pending"]) == (2, 3, 4, 1, 1)
    assert s["stored"] + s["duplicate"] + s["skipped"] + s["failed"] + s["pending"] == s["submitted"]
    assert s["skipped_reasons"] == {"not_html": 1, "unsupported_scheme": 3}


def _jobs(n: int, host: str = "example.com") -> list[dict]:
    return [
        {"url": f"https://{host}/{i}", "id": url_id(f"https://{host}/{i}"), "host": host, "source": "t"}
        for i in range(n)
    ]


def test_finish_removes_the_urls_frontier_state(redis_client):
    """A URL that ends leaves nothing in the frontier: job, stage, lease, page and its waiting count."""
    frontier = Frontier(redis_client, prefix="fs", host_interval=0)
    state = StateStore(redis_client, prefix="fs", frontier=frontier)
    frontier.enqueue(_jobs(2), batch="b")
    [job], _ = frontier.dispatch(budget=1, capacity=10)
    assert frontier.handoff(job, b"<html>page</html>")
    waiting = next(j for j in frontier.pending_ids() if j != job["id"])
    waiting_token = redis_client.hget("fs:urls", bytes.fromhex(waiting)).decode()[2:]
    assert state.finish(job["id"], job["token"], "stored", batch="b")
    assert state.finish(waiting, waiting_token, "skipped", "not_html", batch="b")
    assert redis_client.hlen("fs:jobs") == 0 and redis_client.hlen("fs:stage") == 0
    assert frontier.page(job["id"]) is None
    stats = frontier.stats()
    assert (stats["waiting"], stats["fetching"], stats["processing"], stats["retrying"]) == (0, 0, 0, 0)
    assert frontier.pending_ids() == []


def test_count_duplicates_counts_submitted_and_seen_url(redis_client):
    """Repeats dropped before the frontier count as submitted and duplicate:seen_url, fleet and batch."""
    state = StateStore(redis_client)
    state.count_duplicates(3, batch="b")
    for counters in (state.counters(), state.counters("b")):
        s = summarize(counters)
        assert (s["submitted"], s["duplicate"], s["pending"]) == (3, 3, 0)
        assert s["duplicate_reasons"] == {"seen_url": 3}


def test_failures_can_be_read_for_one_batch(redis_client):
    """failures(batch=...) gives that batch's skipped/failed events only, newest first."""
    state = StateStore(redis_client)
    state.reject(1, "unsupported_scheme", batch="a", urls=["ftp://a"])
    state.reject(2, "invalid_url", batch="b", urls=["x1", "x2"])
    state.reject(1, "empty_url", batch="a", urls=[""])
    assert [e["reason"] for e in state.failures(batch="a")] == ["empty_url", "unsupported_scheme"]
    assert [e["url"] for e in state.failures(batch="b", count=1)] == ["x2"]


def test_content_owner_is_the_first_registrant(redis_client):
    """The first id to register a text hash owns it; a second id gets the owner; the owner gets itself."""
    state = StateStore(redis_client)
    h = "ab" * 32
    assert state.content_owner(h, "1" * 32) == "1" * 32
    assert state.content_owner(h, "2" * 32) == "1" * 32
    assert state.content_owner(h, "1" * 32) == "1" * 32
