import threading

from ingest_core.canonical import url_id
from ingest_core.state import StateStore, release, summarize


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


def test_release_undoes_unsent_claims(redis_client):
    """Claims whose tasks were never sent are released: the URLs are claimable and not counted."""
    state = StateStore(redis_client)
    claims = state.claim(_ids(4), batch="b")
    assert release(state, claims[2:], batch="b") == 2
    assert state.counters("b")["submitted"] == 2
    assert state.claim([c.url_id for c in claims], batch="c")[2:] != [None, None]


def test_content_owner_is_the_first_registrant(redis_client):
    """The first id to register a text hash owns it; a second id gets the owner; the owner gets itself."""
    state = StateStore(redis_client)
    h = "ab" * 32
    assert state.content_owner(h, "1" * 32) == "1" * 32
    assert state.content_owner(h, "2" * 32) == "1" * 32
    assert state.content_owner(h, "1" * 32) == "1" * 32
