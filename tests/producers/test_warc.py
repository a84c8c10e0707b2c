"""WARC files as a source: records read as pages or counted problems, pages claimed into the process stage."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from ingest_core.canonical import url_id
from ingest_core.fetch import Fetcher
from ingest_core.state import StateStore
from producers.sources.warc import WarcIngest, WarcPage, WarcProblem, iter_warc_list, pack, read_warc
from tests.conftest import article_html
from worker.runner import page_result, unpack_page

MAX = 1 << 20


def write_warc(
    records: list[tuple[str, str, bytes | str, str, str]],
    *,
    gz: bool = True,
    date: str = "2026-03-10T12:00:00Z",
) -> bytes:
    """A WARC of (type, url, payload, HTTP status line, content type) records, written with warcio."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gz)
    writer.write_record(writer.create_warcinfo_record("test.warc.gz", {"software": "tests"}))
    for kind, url, payload, status, ctype in records:
        body = payload.encode() if isinstance(payload, str) else payload
        http = None
        if kind in ("response", "request"):
            line = status if kind == "response" else "GET / HTTP/1.1"
            http = StatusAndHeaders(
                line, [("Content-Type", ctype)], protocol="HTTP/1.1", is_http_request=kind == "request"
            )
        rec = writer.create_warc_record(
            url,
            kind,
            payload=io.BytesIO(body),
            http_headers=http,
            warc_content_type="" if http else ctype,
            warc_headers_dict={"WARC-Date": date},
        )
        writer.write_record(rec)
    return out.getvalue()


def page(n: int, url: str | None = None) -> tuple[str, str, str, str, str]:
    return (
        "response",
        url or f"https://news.example.com/a/{n}",
        article_html(n),
        "200 OK",
        "text/html; charset=utf-8",
    )


def read(data: bytes, max_bytes: int = MAX) -> list[WarcPage | WarcProblem]:
    return list(read_warc(io.BytesIO(data), max_bytes=max_bytes, name="t.warc"))


def kinds(items: list[WarcPage | WarcProblem]) -> list[str]:
    return [f"page {i.url}" if isinstance(i, WarcPage) else f"{i.reason} {i.failed}" for i in items]


def test_response_records_with_html_and_200_are_pages_with_their_warc_date() -> None:
    for gz in (True, False):
        items = read(write_warc([page(1), page(2)], gz=gz, date="2026-03-10T12:00:00.123456Z"))
        assert kinds(items) == ["page https://news.example.com/a/1", "page https://news.example.com/a/2"]
        first = items[0]
        assert isinstance(first, WarcPage)
        assert first.fetched_at == "2026-03-10T12:00:00Z"
        assert first.status == 200 and first.headers["content-type"].startswith("text/html")
        assert b"Paragraph 1 of story 1" in first.body


def test_other_records_are_skipped_with_their_reason() -> None:
    items = read(
        write_warc(
            [
                ("request", "https://news.example.com/a/1", b"", "", ""),
                (
                    "metadata",
                    "https://news.example.com/a/1",
                    b"fetchTimeMs: 3",
                    "",
                    "application/warc-fields",
                ),
                ("revisit", "https://news.example.com/a/1", b"", "", "application/http"),
                ("response", "https://news.example.com/img.png", b"\x89PNG", "200 OK", "image/png"),
                (
                    "response",
                    "https://news.example.com/gone",
                    "<html>gone</html>",
                    "404 Not Found",
                    "text/html",
                ),
                ("response", "https://news.example.com/moved", "", "301 Moved Permanently", "text/html"),
                page(3),
            ]
        )
    )
    assert kinds(items) == [
        "warc_request False",
        "warc_metadata False",
        "warc_revisit False",
        "not_html False",
        "http_404 False",
        "http_301 False",
        "page https://news.example.com/a/3",
    ]


def _members(data: bytes) -> list[bytes]:
    """The gzip members of a per-record gzipped WARC."""
    out, rest = [], data
    while rest:
        d = zlib.decompressobj(31)
        d.decompress(rest)
        size = len(rest) - len(d.unused_data)
        out.append(rest[:size])
        rest = d.unused_data
    return out


def test_hostile_records_are_counted_and_the_rest_of_the_file_is_read() -> None:
    good = write_warc([page(1), page(2), page(3)])
    info, r1, r2, r3 = _members(good)
    # a truncated gzip member in the middle of the file: where zlib notices depends on the bytes cut
    middle = kinds(read(info + r1 + r2[:-20] + r3))
    assert (
        middle[0] == "page https://news.example.com/a/1" and middle[-1] == "page https://news.example.com/a/3"
    )
    assert len(middle) == 3 and middle[1] in (
        "warc_corrupt True",
        "warc_truncated True",
        "warc_bad_length True",
    )
    # a truncated last member
    assert kinds(read(info + r1 + r2 + r3[:-20]))[-1] == "warc_truncated True"

    def lie(member: bytes, delta: int) -> bytes:
        raw = gzip.decompress(member)
        raw = re.sub(
            rb"Content-Length: (\d+)",
            lambda m: b"Content-Length: %d" % (int(m.group(1)) + delta),
            raw,
            count=1,
        )
        return gzip.compress(raw)

    for delta, reason in ((-40, "warc_bad_length True"), (+40, "warc_truncated True")):
        assert kinds(read(info + r1 + lie(r2, delta) + r3)) == [
            "page https://news.example.com/a/1",
            reason,
            "page https://news.example.com/a/3",
        ], delta
    # uncompressed: the lying record's claimed block swallows the start of the next one, which is still read
    plain = write_warc([page(1), page(2), page(3)], gz=False)
    longer = re.sub(
        rb"(WARC-Target-URI: https://news.example.com/a/1\r\n(?:.*\r\n)*?Content-Length: )(\d+)",
        lambda m: m.group(1) + str(int(m.group(2)) + 200).encode(),
        plain,
        count=1,
    )
    assert longer != plain
    assert kinds(read(longer)) == [
        "warc_bad_length True",
        "page https://news.example.com/a/2",
        "page https://news.example.com/a/3",
    ]
    # an HTTP payload that does not parse, a record over the byte cap
    bad_http = write_warc(
        [("response", "https://news.example.com/x", "<html>x</html>", "200 OK", "text/html"), page(2)]
    )
    bad_http = b"".join(
        m if i != 1 else gzip.compress(gzip.decompress(m).replace(b"HTTP/1.1 200 OK", b"GARBAGE LINE"))
        for i, m in enumerate(_members(bad_http))
    )
    assert kinds(read(bad_http)) == ["bad_http True", "page https://news.example.com/a/2"]
    big = write_warc(
        [("response", "https://news.example.com/big", "<html>" + "x" * 5000, "200 OK", "text/html"), page(2)]
    )
    assert kinds(read(big, max_bytes=1000)) == ["too_large True", "too_large True"]
    assert kinds(read(big, max_bytes=len(article_html(2)) + 10)) == [
        "too_large True",
        "page https://news.example.com/a/2",
    ]


def test_a_file_that_is_not_an_archive_is_one_problem() -> None:
    for data in (
        b"",
        b"hello, this is text\n" * 50,
        gzip.compress(b"<html>not a warc</html>"),
        b"\x1f\x8bnope",
    ):
        assert kinds(read(data)) == ["not_warc True"]


def test_arc_files_are_read() -> None:
    body = article_html(7).encode()
    http = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n" + body
    header = b"URL IP-address Archive-date Content-type Archive-length"
    filedesc = b"1 0 Tests\n" + header + b"\n"
    arc = b"filedesc://t.arc 0.0.0.0 20260310120000 text/plain %d\n%s\n" % (len(filedesc), filedesc)
    arc += b"https://news.example.com/a/7 127.0.0.1 20260310120000 text/html %d\n%s\n" % (len(http), http)
    items = read(arc)
    assert kinds(items) == ["page https://news.example.com/a/7"]
    assert items[0].fetched_at == "2026-03-10T12:00:00Z"  # type: ignore[union-attr]


def test_packed_page_is_what_the_process_stage_unpacks() -> None:
    item = read(write_warc([page(4, "https://News.Example.com/a/4?utm_source=x")]))[0]
    assert isinstance(item, WarcPage)
    fetched, fetched_at = page_result(unpack_page(pack(item, "https://news.example.com/a/4")))
    assert fetched.url == "https://news.example.com/a/4"
    assert fetched.final_url == "https://News.Example.com/a/4?utm_source=x"
    assert fetched_at == "2026-03-10T12:00:00Z"
    assert fetched.status == 200 and fetched.encoding == "utf-8" and "Paragraph 2 of story 4" in fetched.html


def test_pages_are_claimed_into_the_process_stage_with_their_page_kept(
    state: StateStore, tmp_path: Path
) -> None:
    path = tmp_path / "a.warc.gz"
    path.write_bytes(
        write_warc([page(1), page(2), page(1), ("request", "https://news.example.com/a/1", b"", "", "")])
    )
    sent: list[dict] = []
    ingest = WarcIngest(state, sent.extend, max_bytes=MAX, batch="b1")
    result = ingest.submit([str(path), str(tmp_path / "missing.warc")])
    uid = url_id("https://news.example.com/a/1")
    assert sorted(j["url"] for j in sent) == ["https://news.example.com/a/1", "https://news.example.com/a/2"]
    job = next(j for j in sent if j["id"] == uid)
    assert job["source"] == "warc:a.warc.gz" and job["batch"] == "b1" and job["token"] and job["gen"]
    fetched, _ = page_result(unpack_page(state.frontier.page(uid)))
    assert "Paragraph 1 of story 1" in fetched.html
    r = state.r
    assert r.hget(state.key("stage"), bytes.fromhex(uid)) == f"p:{job['gen']}".encode()
    assert r.zscore(state.key("lease", "p"), bytes.fromhex(uid)) is not None
    assert state.frontier.start(job, 60)  # the process task holds its URL
    counters = state.counters("b1")
    assert counters["submitted"] == 5 == result.submitted
    assert counters["duplicate:seen_url"] == 1  # page 1 twice in one file
    assert counters["skipped:warc_request"] == 1
    assert counters["failed:warc_unreadable"] == 1
    assert result.accepted == 2
    # the same file again in another batch: both URLs are pending there, adopted, no page sent twice
    again: list[dict] = []
    second = WarcIngest(state, again.extend, max_bytes=MAX, batch="b2").submit([str(path)])
    assert again == [] and second.adopted == 2
    # once ended (stored), a URL seen again is a duplicate
    state.finish(uid, job["token"], "stored", "", batch="b1", url=job["url"])
    third: list[dict] = []
    WarcIngest(state, third.extend, max_bytes=MAX, batch="b3").submit([str(path)])
    assert [j["id"] for j in third] == []
    assert state.counters("b3")["duplicate:seen_url"] == 2


def test_a_remote_warc_is_fetched_with_the_safe_fetcher(
    state: StateStore, docs, fetcher, tmp_path: Path
) -> None:
    url = docs.add("/crawl/b.warc.gz", write_warc([page(8), page(9)]), content_type="application/warc")
    listed = tmp_path / "warc.paths.gz"
    listed.write_bytes(gzip.compress(f"{url}\n".encode()))
    sent: list[dict] = []
    WarcIngest(state, sent.extend, max_bytes=MAX, batch="r1", fetcher=fetcher).submit(
        iter_warc_list([str(listed)])
    )
    assert sorted(j["url"] for j in sent) == ["https://news.example.com/a/8", "https://news.example.com/a/9"]
    assert {j["source"] for j in sent} == {"warc:b.warc.gz"}
    assert docs.hits["/crawl/b.warc.gz"] == 1
    # SSRF rules apply: a fetcher without private networks refuses loopback
    public_only = Fetcher(
        user_agent="t", connect_timeout=2, read_timeout=1, deadline=3, max_bytes=1 << 20, max_redirects=0
    )
    blocked: list[dict] = []
    WarcIngest(state, blocked.extend, max_bytes=MAX, batch="r2", fetcher=public_only).submit([url])
    assert blocked == [] and docs.hits["/crawl/b.warc.gz"] == 1
    assert state.counters("r2")["failed:blocked_address"] == 1


def test_each_chunk_waits_for_room_before_its_pages_are_claimed(
    state: StateStore, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("producers.sources.warc.PAGE_CHUNK", 2)
    path = tmp_path / "c.warc.gz"
    path.write_bytes(write_warc([page(n) for n in range(5)]))
    sent: list[dict] = []
    seen_before: list[int] = []

    def wait_room() -> None:  # the CLI blocks here while the process queue is full
        seen_before.append(len(sent))

    WarcIngest(state, sent.extend, max_bytes=MAX, batch="w1", wait_room=wait_room).submit([str(path)])
    assert seen_before == [0, 2, 4] and len(sent) == 5
    # big pages make smaller chunks: one page a chunk once a page's body is over CHUNK_BYTES
    monkeypatch.setattr("producers.sources.warc.CHUNK_BYTES", 1000)
    sent.clear()
    seen_before.clear()
    WarcIngest(state, sent.extend, max_bytes=MAX, batch="w2", wait_room=wait_room, force=True).submit(
        [str(path)]
    )
    assert seen_before == [0, 1, 2, 3, 4] and len(sent) == 5
