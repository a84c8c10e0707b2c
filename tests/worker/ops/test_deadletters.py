import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingest_core.canonical import url_id
from ingest_core.state import StateStore, summarize
from tests.conftest import article_html, ingest
from tests.worker.ops.conftest import wait_terminal

URL = "https://news.example/a"


def _retry(state: StateStore, uid: str, batch: str, url: str = URL) -> str | None:
    """Queue a failed URL again as ``ingest retry-failed`` does; its new claim token, or None."""
    job = {"url": url, "id": uid, "host": "news.example", "source": "retry"}
    done = state.frontier.enqueue([job], batch=batch, retry_failed=True)
    if not done.accepted:
        return None
    return state.r.hget(state.key("urls"), bytes.fromhex(uid))[2:].decode()


def _fail(state: StateStore, url: str = URL, reason: str = "http_503", batch: str = "b1") -> str:
    uid = url_id(url)
    claim = state.claim([uid], batch=batch)[0]
    token = claim.token if claim else _retry(state, uid, batch, url)
    assert token is not None
    assert state.finish(uid, token, "failed", reason, batch=batch, url=url, detail="boom")
    return uid


def test_failed_url_keeps_last_reason_attempts_and_time(redis_client):
    """Each failure of a URL bumps its attempts and replaces its reason; one dead letter per URL."""
    state = StateStore(redis_client)
    _fail(state, reason="http_503")
    _fail(state, reason="timeout", batch="b2")
    (letter,) = state.dead_letters()
    assert (letter["url"], letter["reason"], letter["attempts"], letter["detail"]) == (
        URL,
        "timeout",
        2,
        "boom",
    )
    assert letter["at"] > 0


def test_retried_url_leaves_failed_when_queued_and_counts_once_when_stored(redis_client):
    """A retry moves the URL from failed to pending, then to stored; submitted never grows."""
    state = StateStore(redis_client)
    uid = _fail(state)
    token = _retry(state, uid, "retry")
    assert token is not None
    s = summarize(state.counters())
    assert (s["submitted"], s["failed"], s["failed_reasons"], s["pending"]) == (1, 0, {"http_503": 0}, 1)
    assert state.frontier.stats()["waiting"] == 1  # back in the frontier, waiting for its host
    assert state.finish(uid, token, "stored", batch="retry", url=URL)
    s = summarize(state.counters())
    assert (s["submitted"], s["stored"], s["failed"], s["pending"]) == (1, 1, 0, 0)
    assert state.dead_letters() == []
    assert (
        summarize(state.counters("retry"))["stored"] == summarize(state.counters("retry"))["submitted"] == 1
    )


def test_url_no_longer_failed_is_not_claimed_for_retry(redis_client):
    """A retry skips a URL that is queued or stored by now."""
    state = StateStore(redis_client)
    uid = _fail(state)
    assert _retry(state, uid, "r1") is not None
    assert _retry(state, uid, "r2") is None
    assert summarize(state.counters("r2"))["submitted"] == 0


def test_dead_letters_are_bounded_oldest_dropped(redis_client):
    """With failures_max=3, only the three newest failed URLs keep a dead letter."""
    state = StateStore(redis_client, failures_max=3)
    for n in range(5):
        _fail(state, url=f"https://news.example/{n}")
    assert [d["url"] for d in state.dead_letters()] == [f"https://news.example/{n}" for n in (4, 3, 2)]


def test_failures_are_ranked_by_domain(redis_client):
    """Failed URLs are counted per domain (www. dropped), most failing first."""
    state = StateStore(redis_client)
    for n in range(3):
        _fail(state, url=f"https://www.bad.example/{n}")
    _fail(state, url="https://other.example/x")
    assert state.failing_domains() == [("bad.example", 3), ("other.example", 1)]


class _Flip(BaseHTTPRequestHandler):
    """404 until ``ok`` is set, then a real article."""

    ok = False

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        body = article_html(3).encode() if _Flip.ok else b"<html><body>gone</body></html>"
        self.send_response(200 if _Flip.ok else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flip_server():
    _Flip.ok = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/story"
    server.shutdown()


def test_retry_failed_command_requeues_a_failed_url_that_then_gets_stored(workers, state, flip_server):
    """ingest retry-failed --reason http_404 re-queues the URL; once the page is back it ends stored."""
    env = workers.env
    batch = json.loads(ingest("submit", flip_server, "--json", env=env).stdout)["batch"]
    assert wait_terminal(state, batch)["failed_reasons"] == {"http_404": 1}
    dead = [json.loads(line) for line in ingest("failures", "--dead", "--json", env=env).stdout.splitlines()]
    assert [(d["url"], d["reason"], d["attempts"]) for d in dead] == [(flip_server, "http_404", 1)]

    _Flip.ok = True
    out = json.loads(ingest("retry-failed", "--reason", "http_404", "--json", env=env).stdout)
    assert out["requeued"] == 1
    assert wait_terminal(state, out["batch"])["stored"] == 1
    fleet = json.loads(ingest("stats", "--json", env=env).stdout)
    assert (fleet["submitted"], fleet["stored"], fleet["failed"], fleet["pending"]) == (1, 1, 0, 0)
    assert ingest("failures", "--dead", env=env).stdout == ""
