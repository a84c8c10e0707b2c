"""Feeds (RSS 0.91/1.0/2.0, Atom) fetched from a loopback server with the safe fetcher, and bad feeds."""

from __future__ import annotations

import pytest

from producers.sources import DocumentFetcher, WebSource

RSS091 = """<?xml version="1.0"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"
 "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old</title><link>http://old.example/</link><description>d</description>
<item><title>One</title><link>http://old.example/1</link></item>
<item><title>Two</title><link>http://old.example/2</link></item>
</channel></rss>"""

RSS10 = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://rdf.example/"><title>RDF</title><link>http://rdf.example/</link></channel>
<item rdf:about="http://rdf.example/1"><title>One</title><link>http://rdf.example/1</link>
<dc:date>2026-03-01T08:00:00Z</dc:date></item>
</rdf:RDF>"""

RSS20 = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>News</title><link>http://news.example/</link>
<item><title>Harbour plan</title><link>http://news.example/a?utm_source=rss</link>
<pubDate>Mon, 02 Mar 2026 08:00:00 GMT</pubDate></item>
<item><title>Bridge</title><link>http://news.example/b</link></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom</title><id>urn:x</id><updated>2026-03-01T00:00:00Z</updated>
<entry><title>Relative</title><link rel="alternate" href="/posts/1"/><id>urn:1</id>
<updated>2026-03-01T00:00:00Z</updated></entry>
<entry><title>Absolute</title><link href="https://atom.example/posts/2"/><id>urn:2</id>
<updated>2026-03-02T00:00:00Z</updated></entry>
</feed>"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rss version="2.0"><channel><item><title>&lol3;</title><link>http://bomb.example/1</link></item></channel></rss>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><item><title>&xxe;</title><link>http://xxe.example/1</link></item></channel></rss>"""


def _read(fetcher, *feeds: str) -> WebSource:
    web = WebSource(DocumentFetcher(fetcher), feeds=feeds)
    web.urls = list(web)  # type: ignore[attr-defined]
    return web


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (RSS091, ["http://old.example/1", "http://old.example/2"]),
        (RSS10, ["http://rdf.example/1"]),
        (RSS20, ["http://news.example/a?utm_source=rss", "http://news.example/b"]),
    ],
    ids=["rss-0.91", "rss-1.0", "rss-2.0"],
)
def test_rss_versions_yield_their_item_links(docs, fetcher, body: str, expected: list[str]) -> None:
    """RSS 0.91, 1.0 (RDF) and 2.0 feeds yield every item's link."""
    url = docs.add("/feed.xml", body, content_type="application/rss+xml")
    assert _read(fetcher, url).urls == expected


def test_atom_links_are_resolved_against_the_feed_url(docs, fetcher) -> None:
    """Atom entries yield their alternate links, relative ones made absolute."""
    url = docs.add("/blog/atom.xml", ATOM, content_type="application/atom+xml")
    assert _read(fetcher, url).urls == [docs.url("/posts/1"), "https://atom.example/posts/2"]


def test_feed_titles_and_dates_become_hints(docs, fetcher) -> None:
    """Each entry's title and date are kept as hints for its URL."""
    url = docs.add("/feed.xml", RSS20)
    web = _read(fetcher, url)
    hint = web.hints.get("http://news.example/a?utm_source=rss")
    assert hint["title"] == "Harbour plan" and hint["published"].startswith("Mon, 02 Mar 2026")
    assert hint["feed"] == url


def test_gzip_content_encoding_is_decoded(docs, fetcher) -> None:
    """A feed sent with Content-Encoding: gzip is read like a plain one."""
    url = docs.add("/feed.xml", RSS20, gzip_encoding=True)
    assert len(_read(fetcher, url).urls) == 2


@pytest.mark.parametrize(
    ("path", "route", "reason"),
    [
        ("/missing.xml", None, "http_404"),
        (
            "/page.html",
            {"body": "<!doctype html><html><body><p>hi</p></body></html>", "content_type": "text/html"},
            "not_a_feed",
        ),
        ("/broken.xml", {"body": "<rss version='2.0'><channel><title>x</ti"}, "malformed_xml"),
        ("/bomb.xml", {"body": BILLION_LAUGHS}, "xml_entities"),
        ("/xxe.xml", {"body": XXE}, "xml_entities"),
        ("/slow.xml", {"body": RSS20, "delay": 1.5}, "timeout"),
        ("/json", {"body": '{"not": "a feed"}', "content_type": "application/json"}, "not_a_feed"),
    ],
    ids=["404", "html", "malformed", "billion-laughs", "external-entity", "timeout", "json"],
)
def test_bad_feed_is_a_problem_with_a_reason_and_others_still_read(
    docs, fetcher, path, route, reason
) -> None:
    """404, HTML, broken XML, entity bombs, timeouts: one problem with a reason; the good feed is read."""
    good = docs.add("/good.xml", RSS20)
    if route is not None:
        docs.add(path, **route)
    web = _read(fetcher, docs.url(path), good)
    assert [(p.url, p.reason) for p in web.problems] == [(docs.url(path), reason)]
    assert web.counts[f"problem:{reason}"] == 1
    assert web.urls == ["http://news.example/a?utm_source=rss", "http://news.example/b"]


def test_feed_on_a_private_address_is_blocked_without_permission(docs) -> None:
    """The SSRF guard of page fetches applies to feeds: loopback is refused by default."""
    from ingest_core.fetch import Fetcher

    strict = Fetcher(
        user_agent="t", connect_timeout=1, read_timeout=1, deadline=2, max_bytes=10_000, max_redirects=1
    )
    web = _read(strict, docs.add("/feed.xml", RSS20))
    assert [p.reason for p in web.problems] == ["blocked_address"] and web.urls == []


def test_feed_with_some_broken_xml_still_yields_readable_entries(docs, fetcher) -> None:
    """A truncated feed whose first items parse yields those items."""
    url = docs.add("/cut.xml", RSS20[: RSS20.index("<item><title>Bridge")] + "<item><title>Bri")
    assert _read(fetcher, url).urls == ["http://news.example/a?utm_source=rss"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-32-be"])
def test_entity_bomb_is_refused_in_any_encoding(docs, fetcher, encoding: str) -> None:
    """The billion laughs in UTF-16 or UTF-32 (BOM or not) is refused as xml_entities, like in UTF-8."""
    label = encoding.split("-")[0]
    body = BILLION_LAUGHS.replace('<?xml version="1.0"?>', f'<?xml version="1.0" encoding="{label}"?>')
    good = docs.add("/good.xml", RSS20)
    web = _read(fetcher, docs.add("/wide.xml", body.encode(encoding)), good)
    assert [p.reason for p in web.problems] == ["xml_entities"]
    assert web.urls == ["http://news.example/a?utm_source=rss", "http://news.example/b"]
