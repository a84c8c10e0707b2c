"""Bad input through the whole pipeline (``run_one`` on a loopback server): a record or a reasoned end."""

import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest
import trafilatura.utils

from ingest_core.settings import Settings
from tests.conftest import Workers, ingest
from worker.record import record_schema
from worker.runner import ExtractTimeout, Pipeline, time_limit

ARTICLE = "<html><head><title>{title}</title></head><body><article>{body}</article></body></html>"
JA = "".join(
    f"<p>市議会は{i}日、新しい港湾計画を賛成多数で可決した。計画では夜間のフェリー便を増やし、"
    f"島の住民の通勤を支援する。市長は記者会見で「市民の生活が大きく変わる」と述べた。</p>"
    for i in range(1, 6)
)
AR = "".join(
    f"<p>وافق المجلس البلدي يوم الثلاثاء على خطة جديدة للعبّارات رقم {i}، وقال المسؤولون إن الخدمة "
    f"الليلية ستبدأ في الربيع المقبل لمساعدة سكان الجزر على التنقل إلى أعمالهم ومدارسهم.</p>"
    for i in range(1, 6)
)
RU = "".join(
    f"<p>Городской совет во вторник одобрил новый план паромного сообщения номер {i}. По словам "
    f"чиновников, ночные рейсы начнутся весной и помогут жителям островов добираться до работы.</p>"
    for i in range(1, 6)
)
SLOW_ROWS = 100_000
"""Table rows in the slow page: trafilatura needs ~7 s of Python for it, well past the limits below."""


def _pages() -> dict[str, tuple[bytes, str]]:
    html = "text/html; charset=utf-8"
    return {
        "/empty": (b"", html),
        "/blank": (b"<html><head></head><body>   </body></html>", html),
        "/nav-only": (
            (
                "<html><body><nav><ul>"
                + "".join(f'<li><a href="/s/{i}">Section {i}</a></li>' for i in range(300))
                + "</ul></nav><footer>Copyright 2026</footer></body></html>"
            ).encode(),
            html,
        ),
        "/huge-paragraph": (
            ARTICLE.format(
                title="Long", body="<p>" + "the harbour council met again " * 175_000 + "</p>"
            ).encode(),
            html,
        ),
        "/deep": (
            (
                "<html><body>"
                + "<div>" * 10_000
                + "<p>Deeply nested text about the harbour.</p>"
                + "</div>" * 10_000
                + "</body></html>"
            ).encode(),
            html,
        ),
        "/ja": (ARTICLE.format(title="港湾計画", body=JA).encode(), html),
        "/ar": (ARTICLE.format(title="خطة العبارات", body=AR).encode(), html),
        "/ru": (ARTICLE.format(title="План паромов", body=RU).encode(), html),
        "/json": (
            json.dumps({"title": "x", "items": [{"text": "the harbour council " * 20}] * 20}).encode(),
            html,
        ),
        "/xml": (
            (
                '<?xml version="1.0"?><rss version="2.0"><channel><title>Feed</title>'
                + "".join(
                    f"<item><title>Item {i}</title><link>https://example.com/{i}</link></item>"
                    for i in range(50)
                )
                + "</channel></rss>"
            ).encode(),
            html,
        ),
        "/binary": (bytes((i * 7919 + 13) % 256 for i in range(200_000)), html),
        "/noise": (
            ARTICLE.format(title="Noise", body="<p>" + "harbour council " * 60 + "</p>").encode()[:1024]
            + random.Random(11).randbytes(60_000).replace(b"\x00", b"\x01"),  # no NUL: passes the sniff
            "text/html",
        ),
        "/slow": (
            (
                "<html><body><table>"
                + "".join(f"<tr><td>name {i}</td><td>role {i % 7}</td></tr>" for i in range(SLOW_ROWS))
                + "</table></body></html>"
            ).encode(),
            html,
        ),
        "/fine": (
            ARTICLE.format(
                title="Ferry plan",
                body="".join(
                    f"<p>Paragraph {i}: the harbour council approved the ferry plan number {i}, and people "
                    f"said the night service would change how they travel to work.</p>"
                    for i in range(6)
                ),
            ).encode(),
            html,
        ),
    }


class _Handler(BaseHTTPRequestHandler):
    pages: dict[str, tuple[bytes, str]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        body, ctype = self.pages.get(self.path, (b"not found", "text/plain"))
        self.send_response(200 if self.path in self.pages else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def bad_server() -> Iterator[str]:
    """A loopback server with one endpoint per kind of bad input."""
    _Handler.pages = _pages()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def pipeline(redis_url, redis_client, tmp_path):
    s = Settings.from_env(
        {},
        redis_url=redis_url,
        storage_url=str(tmp_path / "records"),
        allow_private_networks=True,
        host_interval=0,
        key_prefix="bad",
        extract_timeout=20.0,
    )
    p = Pipeline.from_settings(s)
    yield p
    p.store.close()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/empty", "no_text"),
        ("/blank", "no_text"),
        ("/nav-only", "too_short"),
        ("/deep", "no_text"),  # libxml2 stops building the tree at depth 256: nothing under it is readable
        ("/json", "no_text"),
        ("/xml", "no_text"),
        ("/binary", "not_html"),
    ],
)
def test_page_without_article_text_is_skipped_with_reason(pipeline, bad_server, path, reason):
    """Empty, navigation-only, 10,000-deep, JSON, XML and binary bodies served as HTML end skipped."""
    outcome = pipeline.run_one(bad_server + path)
    assert (outcome.state, outcome.reason) == ("skipped", reason), outcome


def test_five_megabyte_single_paragraph_gives_a_valid_record(pipeline, bad_server):
    """A 5 MB page that is one paragraph is stored whole, and its record validates."""
    outcome = pipeline.run_one(bad_server + "/huge-paragraph")
    assert outcome.state == "stored", outcome
    assert outcome.record["word_count"] == 5 * 175_000
    jsonschema.validate(outcome.record, record_schema())


@pytest.mark.parametrize(("path", "language"), [("/ja", "ja"), ("/ar", "ar"), ("/ru", "ru")])
def test_non_latin_script_page_is_stored_with_its_language(pipeline, bad_server, path, language):
    """Japanese, Arabic and Russian articles become records with their language detected."""
    outcome = pipeline.run_one(bad_server + path)
    assert outcome.state == "stored", outcome
    assert outcome.record["language"] == language
    assert outcome.record["word_count"] >= 25
    jsonschema.validate(outcome.record, record_schema())


def test_in_process_time_limit_fails_a_slow_page_and_the_next_page_is_stored(pipeline, bad_server):
    """Past extract_timeout a page ends failed:extract_timeout; the same pipeline then stores a good page."""
    pipeline.extract_timeout = 0.3
    slow = pipeline.run_one(bad_server + "/slow")
    assert (slow.state, slow.reason) == ("failed", "extract_timeout")
    assert pipeline.state.dead_letters()[0]["reason"] == "extract_timeout"
    assert pipeline.run_one(bad_server + "/fine").state == "stored"


def test_a_time_limit_the_parser_catches_still_fails_the_page(pipeline, bad_server, monkeypatch):
    """The alarm going off inside trafilatura's parser (which catches it and goes on) ends the page
    failed:extract_timeout, not skipped:no_text or stored; the alarm is raised by hand, not by the clock."""
    real = trafilatura.utils.fromstring

    def alarm_then_parse(*args, **kwargs):
        signal.raise_signal(signal.SIGALRM)  # the limit runs out right here, whatever the machine's speed
        return real(*args, **kwargs)

    monkeypatch.setattr(trafilatura.utils, "fromstring", alarm_then_parse)
    pipeline.extract_timeout = 60.0
    outcome = pipeline.run_one(bad_server + "/fine")
    assert (outcome.state, outcome.reason) == ("failed", "extract_timeout"), outcome
    monkeypatch.setattr(trafilatura.utils, "fromstring", real)
    assert pipeline.run_one(bad_server + "/fine", force=True).state == "stored"


def test_time_limit_raises_after_a_block_that_swallowed_it():
    """A block that catches the ExtractTimeout and returns normally still leaves by ExtractTimeout."""
    with pytest.raises(ExtractTimeout):
        with time_limit(60.0):
            try:
                signal.raise_signal(signal.SIGALRM)
            except Exception:
                pass
    with time_limit(60.0):  # a block that finishes in time raises nothing
        pass
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # and leaves no alarm behind


def test_random_bytes_behind_an_html_start_are_skipped_not_stored(pipeline, bad_server):
    """A body of random bytes after an HTML-looking first kilobyte ends skipped:not_html (or decode_error)."""
    outcome = pipeline.run_one(bad_server + "/noise")
    assert outcome.state == "skipped", outcome
    assert outcome.reason in ("not_html", "decode_error")


def test_prefork_worker_fails_a_slow_page_on_its_time_limit_and_goes_on(ingest_env, bad_server, tmp_path):
    """Through a real prefork process worker with a 2 s limit: the slow page fails, a later one is stored."""
    env = {
        **ingest_env,
        "INGEST_EXTRACT_TIMEOUT": "2",
        "INGEST_HOST_INTERVAL": "0",
        "INGEST_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "INGEST_PROCESS_MAX_TASKS_PER_CHILD": "1",  # every task in a fresh child: recycling works too
    }
    workers = Workers(env, tmp_path / "workers.log")
    try:
        slow = json.loads(ingest("submit", bad_server + "/slow", "--json", env=env).stdout)["batch"]
        _wait(slow, env)
        fine = json.loads(ingest("submit", bad_server + "/fine", "--json", env=env).stdout)["batch"]
        _wait(fine, env)
        assert _stats(slow, env)["failed_reasons"] == {"extract_timeout": 1}, workers.log()
        assert _stats(fine, env)["stored"] == 1, workers.log()
    finally:
        workers.stop()


def _stats(batch: str, env: dict[str, str]) -> dict:
    return json.loads(ingest("stats", "--json", "--batch", batch, env=env).stdout)


def _wait(batch: str, env: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (stats := _stats(batch, env))["pending"] or not stats["submitted"]:
        assert time.monotonic() < deadline, f"batch {batch} not terminal: {stats}"
        time.sleep(0.3)


if os.name != "posix":  # pragma: no cover - SIGALRM and prefork are POSIX
    pytest.skip("POSIX only", allow_module_level=True)
