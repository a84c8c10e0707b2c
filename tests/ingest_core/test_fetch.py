"""The fetch stage against a real misbehaving HTTP server on loopback."""

from __future__ import annotations

import codecs
import html
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest_core.errors import (
    BlockedAddress,
    HostUnreachable,
    InvalidURL,
    PermanentError,
    RateLimited,
    Skip,
    TransientError,
)
from ingest_core.fetch import Fetcher, decode_html, parse_retry_after
from ingest_core.settings import Settings
from tests.faultserver import CHARSET_TEXTS, FaultServer, charset_page, gzip_bomb


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer("127.0.0.1") as srv:
        yield srv


def make_fetcher(**overrides: object) -> Fetcher:
    options: dict = dict(
        user_agent="article-ingest-test/1.0",
        connect_timeout=2.0,
        read_timeout=2.0,
        deadline=5.0,
        max_bytes=1024 * 1024,
        max_redirects=5,
        allow_networks=["127.0.0.0/8"],
    )
    options.update(overrides)
    return Fetcher(**options)


@pytest.fixture(scope="module")
def fetcher() -> Fetcher:
    return make_fetcher()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the happy path --------------------------------------------------------------------------------------


def test_article_is_fetched_with_its_metadata(fetcher: Fetcher, server: FaultServer) -> None:
    """A plain page comes back as a FetchResult with status, type, encoding, size and lower-case headers."""
    r = fetcher.fetch(server.url("/article/7"))
    assert (r.status, r.content_type, r.encoding) == (200, "text/html", "utf-8")
    assert r.url == r.final_url == server.url("/article/7")
    assert "Paragraph 3 of story 7" in r.html
    assert r.nbytes == len(r.html.encode("utf-8"))
    assert r.headers["content-type"].startswith("text/html")
    assert r.elapsed >= 0


def test_user_agent_and_host_header_are_sent(fetcher: Fetcher, server: FaultServer) -> None:
    """The configured User-Agent goes out with the request's own Host header."""
    r = fetcher.fetch(server.url("/echo"))
    assert "User-Agent: article-ingest-test/1.0" in r.html
    assert f"Host: 127.0.0.1:{server.port}" in r.html


def test_fetcher_is_usable_from_many_threads(fetcher: Fetcher, server: FaultServer) -> None:
    """Concurrent fetches from many threads each get their own correct page."""
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            results[n] = fetcher.fetch(server.url(f"/article/{n}")).html
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert all(f"Story {n} |" in results[n] for n in range(24))


def test_from_settings_reads_fetch_settings() -> None:
    """from_settings maps Settings fields, splitting the comma-separated allow_networks."""
    s = Settings(
        user_agent="ua/1",
        connect_timeout=1.5,
        read_timeout=2.5,
        fetch_deadline=9.0,
        max_bytes=1234,
        max_redirects=2,
        allow_networks="127.0.0.0/8, 10.0.0.0/8",
    )
    f = Fetcher.from_settings(s)
    assert (f.user_agent, f.connect_timeout, f.read_timeout, f.deadline, f.max_bytes, f.max_redirects) == (
        "ua/1",
        1.5,
        2.5,
        9.0,
        1234,
        2,
    )
    assert [str(n) for n in f.guard.allow_networks] == ["127.0.0.0/8", "10.0.0.0/8"]


@pytest.mark.parametrize(
    "bad",
    [{"connect_timeout": 0}, {"deadline": -1}, {"max_bytes": 0}, {"max_redirects": -1}, {"user_agent": ""}],
)
def test_bad_constructor_values_are_rejected(bad: dict) -> None:
    """Nonsense limits fail at construction with ValueError."""
    with pytest.raises(ValueError):
        make_fetcher(**bad)


# -- SSRF ---------------------------------------------------------------------------------------------------


def test_loopback_is_blocked_by_default(server: FaultServer) -> None:
    """Without allow_networks, the loopback server is refused before any connection."""
    with pytest.raises(BlockedAddress):
        make_fetcher(allow_networks=()).fetch(server.url("/article/999"))
    assert server.hits["/article/999"] == 0


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "127.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
        "0251.0376.0251.0376",
        "0",
        "100.64.0.1",
        "[fe80::1]",
        "224.0.0.1",
        "localhost",
    ],
)
def test_each_blocked_address_form_is_refused(host: str) -> None:
    """Every spelling of a non-public host fails with BlockedAddress and no request is made."""
    with pytest.raises(BlockedAddress) as info:
        make_fetcher(allow_networks=()).fetch(f"http://{host}:{free_port()}/")
    assert info.value.reason == "blocked_address"


def test_connection_goes_to_the_checked_ip_not_a_second_lookup(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is resolved once and the vetted IP is connected to, Host header kept."""
    real = socket.getaddrinfo
    calls: list[str] = []

    def rebinding(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
        if host == "rebind.test":
            calls.append(host)
            # first answer passes the guard; any later answer would point at the metadata service
            addr = "127.0.0.1" if len(calls) == 1 else "169.254.169.254"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    r = make_fetcher().fetch(f"http://rebind.test:{server.port}/echo")
    assert r.status == 200
    assert f"Host: rebind.test:{server.port}" in r.html
    assert calls == ["rebind.test"]


def test_rebinding_name_pointing_private_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name whose (only) lookup answers with the metadata address is refused."""
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))],
    )
    with pytest.raises(BlockedAddress, match="169.254.169.254"):
        make_fetcher().fetch("http://metadata.example/latest/meta-data/")


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]:{port}/article/1",
        "http://127.0.0.2:{port}/article/1",
        "http://0x7f.0.0.2:{port}/article/1",
    ],
)
def test_redirect_to_a_private_address_is_refused(server: FaultServer, target: str) -> None:
    """Every redirect hop is checked: a public-looking page cannot bounce us into the private network."""
    only_first = make_fetcher(allow_networks=["127.0.0.1/32"])
    url = server.url("/redirect-to?url=" + target.format(port=server.port))
    with pytest.raises(BlockedAddress):
        only_first.fetch(url)


DONE_WHEN_TARGETS = [
    "http://127.0.0.1:{port}/article/1",
    "http://10.0.0.1/",
    "http://[::1]:{port}/article/1",
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433:{port}/article/1",
]
"""The addresses the guard must refuse with ``INGEST_ALLOW_PRIVATE_NETWORKS`` unset."""


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every address a socket connects to during the test: proof that no byte went anywhere else."""
    seen: list[tuple] = []
    real = socket.socket.connect

    def spy(sock: socket.socket, address: tuple) -> None:
        seen.append(address)
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    return seen


@pytest.mark.parametrize("target", DONE_WHEN_TARGETS)
def test_default_settings_block_private_targets_without_connecting(
    server: FaultServer, connects: list[tuple], target: str
) -> None:
    """Default settings (nothing in the environment) refuse each target before any socket connects."""
    server.reset()
    fetcher = Fetcher.from_settings(Settings.from_env({}))
    with pytest.raises(BlockedAddress):
        fetcher.fetch(target.format(port=server.port))
    assert connects == [] and server.hits == {}


@pytest.mark.parametrize("target", DONE_WHEN_TARGETS)
def test_public_looking_redirect_to_private_target_connects_only_to_the_first_host(
    connects: list[tuple], monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """A public-looking name whose page redirects into the private network: the redirect is refused
    and the only connection made is to the first host (the one address this test lets through)."""
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
        if host == "news.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with FaultServer("127.0.0.2") as public:
        fetcher = Fetcher.from_settings(Settings.from_env({"INGEST_ALLOW_NETWORKS": "127.0.0.2/32"}))
        url = f"http://news.example.com:{public.port}/redirect-to?url=" + target.format(port=public.port)
        with pytest.raises(BlockedAddress):
            fetcher.fetch(url)
        assert public.hits["/redirect-to"] == 1
    assert {addr[0] for addr in connects} == {"127.0.0.2"}


# -- redirects ----------------------------------------------------------------------------------------------


def test_redirects_are_followed_to_the_final_url(fetcher: Fetcher, server: FaultServer) -> None:
    """A chain of redirects within the limit ends at the final page, reported as final_url."""
    r = fetcher.fetch(server.url("/redirect?n=3"))
    assert r.final_url == server.url("/article/1")
    assert r.url == server.url("/redirect?n=3")


def test_too_many_redirects_fail_permanently(fetcher: Fetcher, server: FaultServer) -> None:
    """More redirects than max_redirects is PermanentError too_many_redirects."""
    with pytest.raises(PermanentError) as info:
        fetcher.fetch(server.url("/redirect?n=6"))
    assert info.value.reason == "too_many_redirects"


def test_redirect_loop_is_detected(fetcher: Fetcher, server: FaultServer) -> None:
    """A redirect back to a URL already visited is PermanentError redirect_loop."""
    with pytest.raises(PermanentError) as info:
        fetcher.fetch(server.url("/redirect-loop"))
    assert info.value.reason == "redirect_loop"


def test_redirect_to_another_scheme_is_refused(fetcher: Fetcher, server: FaultServer) -> None:
    """A redirect to file:// or ftp:// is PermanentError unsupported_scheme."""
    with pytest.raises(PermanentError) as info:
        fetcher.fetch(server.url("/redirect-to?url=file:///etc/passwd"))
    assert info.value.reason == "unsupported_scheme"


# -- invalid input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "unsupported_scheme"),
        ("javascript:alert(1)", "unsupported_scheme"),
        ("example.com/page", "unsupported_scheme"),
        ("http:///nohost", "invalid_url"),
        ("", "invalid_url"),
        ("http://exa mple.com/", "invalid_url"),
        ("http://example.com:99999/", "invalid_url"),
    ],
)
def test_unusable_url_is_invalid(fetcher: Fetcher, url: str, reason: str) -> None:
    """URLs that cannot be fetched raise InvalidURL with a specific reason."""
    with pytest.raises(InvalidURL) as info:
        fetcher.fetch(url)
    assert info.value.reason == reason


# -- status codes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 451, 501])
def test_client_errors_are_permanent(fetcher: Fetcher, server: FaultServer, code: int) -> None:
    """4xx (other than 408/425/429) and 501 fail permanently with reason http_<code>."""
    with pytest.raises(PermanentError) as info:
        fetcher.fetch(server.url(f"/status/{code}"))
    assert info.value.reason == f"http_{code}"


@pytest.mark.parametrize("code", [408, 425, 500, 502, 503, 504])
def test_server_errors_are_transient(fetcher: Fetcher, server: FaultServer, code: int) -> None:
    """408, 425 and 5xx gateway/server errors are TransientError http_<code>."""
    with pytest.raises(TransientError) as info:
        fetcher.fetch(server.url(f"/status/{code}"))
    assert info.value.reason == f"http_{code}"
    assert not isinstance(info.value, RateLimited)


def test_429_with_retry_after_is_rate_limited(fetcher: Fetcher, server: FaultServer) -> None:
    """429 raises RateLimited carrying the server's Retry-After in seconds."""
    with pytest.raises(RateLimited) as info:
        fetcher.fetch(server.url("/status/429?retry_after=7"))
    assert (info.value.reason, info.value.retry_after) == ("http_429", 7.0)


def test_429_without_retry_after_is_rate_limited_without_delay(fetcher: Fetcher, server: FaultServer) -> None:
    """429 without Retry-After is still RateLimited, with retry_after None."""
    with pytest.raises(RateLimited) as info:
        fetcher.fetch(server.url("/status/429"))
    assert info.value.retry_after is None


def test_503_with_retry_after_is_rate_limited(fetcher: Fetcher, server: FaultServer) -> None:
    """503 with Retry-After raises RateLimited http_503 so the retry honours the delay."""
    with pytest.raises(RateLimited) as info:
        fetcher.fetch(server.url("/status/503?retry_after=120"))
    assert (info.value.reason, info.value.retry_after) == ("http_503", 120.0)


def test_retry_after_http_date_is_converted_to_seconds() -> None:
    """A Retry-After HTTP-date becomes seconds from now; garbage becomes None."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("soon") is None


# -- network faults -----------------------------------------------------------------------------------------


def test_slow_response_is_a_timeout(server: FaultServer) -> None:
    """A server that does not answer within read_timeout gives TransientError timeout."""
    with pytest.raises(TransientError) as info:
        make_fetcher(read_timeout=0.3).fetch(server.url("/delay?s=2"))
    assert info.value.reason == "timeout"


def test_trickling_body_is_cut_at_the_deadline(server: FaultServer) -> None:
    """A body that keeps trickling under the read timeout is stopped by the total deadline."""
    with pytest.raises(TransientError) as info:
        make_fetcher(read_timeout=1.0, deadline=0.8).fetch(server.url("/trickle?s=5"))
    assert info.value.reason == "timeout"


def test_slow_but_steady_body_within_the_deadline_succeeds(fetcher: Fetcher, server: FaultServer) -> None:
    """A body sent in pauses shorter than the read timeout arrives whole."""
    r = fetcher.fetch(server.url("/slow?chunks=3&delay=0.1"))
    assert r.html.count("<p>") == 3


def test_refused_connection_is_a_quickly_retried_connection_refused() -> None:
    """Nothing listening on the port: HostUnreachable connection_refused, whose own schedule is seconds."""
    with pytest.raises(HostUnreachable) as info:
        make_fetcher().fetch(f"http://127.0.0.1:{free_port()}/")
    assert info.value.reason == "connection_refused"
    assert isinstance(info.value, TransientError)
    assert info.value.retry_delays and len(info.value.retry_delays) <= 3 and sum(info.value.retry_delays) < 10


def test_resolver_that_cannot_answer_now_is_a_quickly_retried_dns_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EAI_AGAIN (offline: "Temporary failure in name resolution") is HostUnreachable dns_error."""

    def offline(host, port, *a, **k):  # noqa: ANN001, ANN202
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(HostUnreachable) as info:
        make_fetcher().fetch("http://news.example.com/a")
    assert info.value.reason == "dns_error"
    assert info.value.retry_delays and sum(info.value.retry_delays) < 10


# -- one deadline for the whole exchange ---------------------------------------------------------------------

# Generous bound on top of the deadline: the watchdog fires at the deadline itself.
_DEADLINE_SLACK = 2.5


def _fetch_timed(fetcher: Fetcher, url: str, **kwargs: object) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        fetcher.fetch_text(url, **kwargs) if kwargs.pop("text", False) else fetcher.fetch(url)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.parametrize("path", ["/trickle-status?every=0.3", "/trickle-header?every=0.3"])
def test_trickled_response_head_is_cut_at_the_deadline(server: FaultServer, path: str) -> None:
    """A status line or header dripping bytes well inside the read timeout is a timeout at the deadline."""
    exc, took = _fetch_timed(make_fetcher(read_timeout=2.0, deadline=2.0), server.url(path))
    assert isinstance(exc, TransientError) and exc.reason == "timeout", exc
    assert took < 2.0 + _DEADLINE_SLACK


def test_trickled_header_on_a_kept_alive_connection_is_cut_at_the_deadline(server: FaultServer) -> None:
    """The deadline also guards a pooled connection reused from an earlier fetch to the same host; fetches
    that finished in time leave no armed deadline behind (no descriptor left open, the kept-alive connection
    still serves after their deadlines passed)."""
    fetcher = make_fetcher(read_timeout=2.0, deadline=2.0)
    assert fetcher.fetch(server.url("/article/1")).status == 200
    exc, took = _fetch_timed(fetcher, server.url("/trickle-header?every=0.3"))
    assert isinstance(exc, TransientError) and exc.reason == "timeout", exc
    assert took < 2.0 + _DEADLINE_SLACK
    fds = len(os.listdir("/proc/self/fd"))
    quick = make_fetcher(deadline=0.5)
    for n in range(20):
        assert quick.fetch(server.url(f"/article/{n}")).status == 200
    time.sleep(0.8)  # past every deadline armed above
    assert quick.fetch(server.url("/article/99")).status == 200
    assert len(os.listdir("/proc/self/fd")) <= fds + 1  # + the pooled connection


def test_trickled_text_resource_is_cut_at_the_deadline(server: FaultServer) -> None:
    """fetch_text (robots.txt, feeds, sitemaps) has the same whole-exchange deadline."""
    server.set_robots("User-agent: *\nDisallow:\n", trickle="header")
    try:
        exc, took = _fetch_timed(make_fetcher(deadline=2.0), server.url("/robots.txt"), text=True)
    finally:
        server.set_robots("User-agent: *\nDisallow: /private/\n")
    assert isinstance(exc, TransientError) and exc.reason == "timeout", exc
    assert took < 2.0 + _DEADLINE_SLACK


@pytest.mark.parametrize("path", ["/reset", "/drop"])
def test_reset_or_dropped_connection_is_a_connection_error(
    fetcher: Fetcher, server: FaultServer, path: str
) -> None:
    """A TCP reset or a close before the response is TransientError connection_error."""
    with pytest.raises(TransientError) as info:
        fetcher.fetch(server.url(path))
    assert info.value.reason == "connection_error"


def test_partial_body_is_an_incomplete_body(fetcher: Fetcher, server: FaultServer) -> None:
    """A body shorter than its Content-Length is TransientError incomplete_body."""
    with pytest.raises(TransientError) as info:
        fetcher.fetch(server.url("/partial"))
    assert info.value.reason == "incomplete_body"


def test_tls_failure_is_a_permanent_tls_error(server: FaultServer) -> None:
    """https:// to a server that does not speak TLS is PermanentError tls_error."""
    with pytest.raises(PermanentError) as info:
        make_fetcher().fetch(f"https://127.0.0.1:{server.port}/article/1")
    assert info.value.reason == "tls_error"


def test_unknown_name_is_a_permanent_dns_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that does not exist is PermanentError dns_error (no real DNS needed)."""

    def nxdomain(host, port, *a, **k):  # noqa: ANN001, ANN202
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    with pytest.raises(PermanentError) as info:
        make_fetcher().fetch("http://no-such-host.invalid/")
    assert info.value.reason == "dns_error"


# -- size and encoding --------------------------------------------------------------------------------------


def test_gzip_bomb_stops_at_the_cap(server: FaultServer) -> None:
    """A 64 MiB gzip bomb is cut after max_bytes of decoded data: PermanentError too_large."""
    gzip_bomb(64)  # built (and cached) before the request, so a slow machine cannot time the read out
    with pytest.raises(PermanentError) as info:
        make_fetcher(max_bytes=256 * 1024).fetch(server.url("/gzip-bomb?mb=64"))
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("path", ["/gzip", "/deflate"])
def test_compressed_page_is_decoded(fetcher: Fetcher, server: FaultServer, path: str) -> None:
    """gzip and deflate bodies are inflated."""
    assert "Paragraph 1 of story" in fetcher.fetch(server.url(path)).html


@pytest.mark.parametrize("path", ["/big?kb=600", "/big?kb=600&cl=0"])
def test_oversized_body_is_too_large(server: FaultServer, path: str) -> None:
    """A body over max_bytes fails too_large, with or without Content-Length."""
    with pytest.raises(PermanentError) as info:
        make_fetcher(max_bytes=512 * 1024).fetch(server.url(path))
    assert info.value.reason == "too_large"


@pytest.mark.parametrize(
    "path", ["/json", "/pdf", "/binary", "/lie/html-as-binary", "/lie/plain-text", "/lie/png-no-type"]
)
def test_non_html_is_skipped(fetcher: Fetcher, server: FaultServer, path: str) -> None:
    """Non-HTML types, and bodies that are not HTML whatever the header says, are Skip not_html."""
    with pytest.raises(Skip) as info:
        fetcher.fetch(server.url(path))
    assert info.value.reason == "not_html"


@pytest.mark.parametrize("path", ["/lie/no-type", "/lie/octet-html"])
def test_html_without_a_proper_type_is_sniffed(fetcher: Fetcher, server: FaultServer, path: str) -> None:
    """HTML served with no Content-Type or as octet-stream is recognised and reported as text/html."""
    r = fetcher.fetch(server.url(path))
    assert r.content_type == "text/html"
    assert "Story 4" in r.html


ENCODINGS = [
    "windows-1252",
    "iso-8859-1",
    "iso-8859-2",
    "iso-8859-5",
    "iso-8859-7",
    "shift_jis",
    "gb18030",
    "euc-kr",
    "utf-8",
]


@pytest.mark.parametrize("via", ["header", "meta", "http-equiv", "none"])
@pytest.mark.parametrize("enc", ENCODINGS)
def test_charset_is_decoded_right(fetcher: Fetcher, server: FaultServer, enc: str, via: str) -> None:
    """Each encoding decodes right, declared in the header, in a <meta>, or not at all."""
    r = fetcher.fetch(server.url(f"/charset/{enc}?via={via}"))
    assert CHARSET_TEXTS[enc] in html.unescape(r.html)


@pytest.mark.parametrize("enc", ["windows-1252", "shift_jis", "gb18030"])
def test_header_claiming_utf8_for_legacy_bytes_is_overruled(
    fetcher: Fetcher, server: FaultServer, enc: str
) -> None:
    """charset=utf-8 on a body that is not UTF-8 falls back to detection instead of mojibake."""
    r = fetcher.fetch(server.url(f"/charset/{enc}?via=header-lies"))
    assert CHARSET_TEXTS[enc] in html.unescape(r.html)


def test_header_charset_wins_over_meta() -> None:
    """The HTTP charset is used before a conflicting <meta charset>."""
    body = '<html><head><meta charset="iso-8859-5"></head><body>Ça coûte 3 €</body></html>'.encode("cp1252")
    text, enc = decode_html(body, "windows-1252")
    assert enc == "cp1252" and "Ça coûte 3 €" in text


def test_bom_wins_over_the_header() -> None:
    """A UTF-8 byte order mark decides the encoding even against a header charset, and is stripped."""
    body = codecs.BOM_UTF8 + "<p>Grüße 東京</p>".encode()
    text, enc = decode_html(body, "iso-8859-1")
    assert (text, enc) == ("<p>Grüße 東京</p>", "utf-8")


def test_latin1_label_decodes_as_windows_1252() -> None:
    """Pages labelled ISO-8859-1 are decoded as windows-1252, as browsers do (curly quotes, euro)."""
    body, _ = charset_page("windows-1252", "none")
    text, enc = decode_html(body, "iso-8859-1")
    assert enc == "cp1252" and CHARSET_TEXTS["windows-1252"] in html.unescape(text)


# -- conditional GET and text fetches ----------------------------------------------------------------------


def test_matching_etag_returns_304_without_body(fetcher: Fetcher, server: FaultServer) -> None:
    """If-None-Match with the current ETag gives a 304 result with empty html."""
    r = fetcher.fetch(server.url("/etag"), etag='"v1"')
    assert (r.status, r.html, r.nbytes) == (304, "", 0)


def test_matching_last_modified_returns_304(fetcher: Fetcher, server: FaultServer) -> None:
    """If-Modified-Since with the page's Last-Modified gives a 304 result."""
    r = fetcher.fetch(server.url("/etag"), last_modified="Wed, 01 Jan 2025 00:00:00 GMT")
    assert r.status == 304


def test_stale_etag_gets_the_full_page(fetcher: Fetcher, server: FaultServer) -> None:
    """A changed ETag gets a normal 200 with the ETag in the headers."""
    r = fetcher.fetch(server.url("/etag"), etag='"v0"')
    assert (r.status, r.headers["etag"]) == (200, '"v1"')


def test_fetch_text_reads_plain_text_and_truncates(fetcher: Fetcher, server: FaultServer) -> None:
    """fetch_text accepts any type (robots.txt) and cuts the body at max_bytes instead of failing."""
    server.set_robots("User-agent: *\nDisallow: /private/\n" + "# filler\n" * 1000)
    r = fetcher.fetch_text(server.url("/robots.txt"), max_bytes=100)
    assert r.content_type == "text/plain"
    assert r.html.startswith("User-agent: *") and r.nbytes == 100


# -- TLS with a pinned IP -----------------------------------------------------------------------------------


def _self_signed(name: str, cert_path: str, key_path: str) -> None:
    """A self-signed certificate for ``name`` only (valid two days), written as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(key_path).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultServer, str]]:
    """An HTTPS fault server whose self-signed certificate names only ``pinned.test``; yields (server, CA)."""
    d: Path = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    _self_signed("pinned.test", cert, key)
    with FaultServer("127.0.0.1", tls=(cert, key)) as srv:
        yield srv, cert


def _resolve_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
        if host == "pinned.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_https_to_a_pinned_ip_verifies_the_certificate_for_the_name(
    tls_server: tuple[FaultServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting to the vetted IP still sends SNI and checks the certificate against the host name."""
    srv, ca = tls_server
    _resolve_pinned(monkeypatch)
    r = make_fetcher(ca_certs=ca).fetch(f"https://pinned.test:{srv.port}/echo")
    assert r.status == 200 and f"Host: pinned.test:{srv.port}" in r.html


def test_certificate_for_another_name_is_a_tls_error(tls_server: tuple[FaultServer, str]) -> None:
    """A certificate that does not name the requested host fails with tls_error."""
    srv, ca = tls_server
    with pytest.raises(PermanentError) as info:
        make_fetcher(ca_certs=ca).fetch(f"https://127.0.0.1:{srv.port}/echo")
    assert info.value.reason == "tls_error"


def test_trickled_header_over_tls_is_cut_at_the_deadline(
    tls_server: tuple[FaultServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline holds through TLS: the watchdog shuts down the socket under the TLS layer."""
    srv, ca = tls_server
    _resolve_pinned(monkeypatch)
    fetcher = make_fetcher(ca_certs=ca, read_timeout=2.0, deadline=2.0)
    exc, took = _fetch_timed(fetcher, f"https://pinned.test:{srv.port}/trickle-header?every=0.3")
    assert isinstance(exc, TransientError) and exc.reason == "timeout", exc
    assert took < 2.0 + _DEADLINE_SLACK


def test_untrusted_certificate_is_a_tls_error(
    tls_server: tuple[FaultServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-signed certificate not in the trust store fails with tls_error."""
    srv, _ = tls_server
    _resolve_pinned(monkeypatch)
    with pytest.raises(PermanentError) as info:
        make_fetcher().fetch(f"https://pinned.test:{srv.port}/echo")
    assert info.value.reason == "tls_error"
