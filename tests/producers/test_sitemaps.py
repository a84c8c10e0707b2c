"""Sitemaps from a loopback server: urlset, nested indexes, gzip, Google News hints, and bad sitemaps."""

from __future__ import annotations

import gzip

import pytest

from producers.sources import DocumentFetcher, WebSource

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locs: str) -> str:
    return (
        f'<?xml version="1.0"?><urlset {NS}>'
        + "".join(f"<url><loc>{u}</loc></url>" for u in locs)
        + "</urlset>"
    )


def index(*locs: str) -> str:
    body = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in locs)
    return f'<?xml version="1.0"?><sitemapindex {NS}>{body}</sitemapindex>'


def _read(fetcher, *sitemaps: str, max_depth: int = 3) -> WebSource:
    web = WebSource(DocumentFetcher(fetcher), sitemaps=sitemaps, max_depth=max_depth)
    web.urls = list(web)  # type: ignore[attr-defined]
    return web


def test_urlset_yields_every_loc(docs, fetcher) -> None:
    """A plain urlset yields its <loc> URLs in order."""
    url = docs.add("/sitemap.xml", urlset("http://s.example/1", "http://s.example/2"))
    assert _read(fetcher, url).urls == ["http://s.example/1", "http://s.example/2"]


def test_nested_index_is_followed(docs, fetcher) -> None:
    """An index of an index of urlsets yields the URLs of every leaf sitemap."""
    docs.add("/a.xml", urlset("http://s.example/a"))
    docs.add("/b.xml", urlset("http://s.example/b"))
    docs.add("/inner.xml", index(docs.url("/b.xml")))
    url = docs.add("/index.xml", index(docs.url("/a.xml"), docs.url("/inner.xml")))
    assert _read(fetcher, url).urls == ["http://s.example/a", "http://s.example/b"]


def test_index_deeper_than_the_limit_is_cut_with_a_reason(docs, fetcher) -> None:
    """Indexes nested past max_depth are not followed; the cut is reported as sitemap_too_deep."""
    docs.add("/leaf.xml", urlset("http://s.example/deep"))
    docs.add("/i2.xml", index(docs.url("/leaf.xml")))
    docs.add("/i1.xml", index(docs.url("/i2.xml")))
    web = _read(fetcher, docs.add("/i0.xml", index(docs.url("/i1.xml"))), max_depth=1)
    assert web.urls == [] and [p.reason for p in web.problems] == ["sitemap_too_deep"]


def test_index_that_lists_itself_is_read_once(docs, fetcher) -> None:
    """A sitemap index pointing to itself is fetched once and reported as a loop; its other children count."""
    docs.add("/leaf.xml", urlset("http://s.example/1"))
    url = docs.add("/self.xml", index(docs.url("/self.xml"), docs.url("/leaf.xml")))
    web = _read(fetcher, url)
    assert web.urls == ["http://s.example/1"]
    assert [p.reason for p in web.problems] == ["sitemap_loop"] and docs.hits["/self.xml"] == 1


def test_gzip_file_sitemap_is_inflated(docs, fetcher) -> None:
    """A .xml.gz served as application/gzip (not Content-Encoding) is decompressed and read."""
    url = docs.add(
        "/sitemap.xml.gz",
        gzip.compress(urlset("http://s.example/gz").encode()),
        content_type="application/x-gzip",
    )
    assert _read(fetcher, url).urls == ["http://s.example/gz"]


def test_gzip_content_encoding_sitemap_is_read(docs, fetcher) -> None:
    """A sitemap sent with Content-Encoding: gzip is read like a plain one."""
    url = docs.add("/sitemap.xml", urlset("http://s.example/ce"), gzip_encoding=True)
    assert _read(fetcher, url).urls == ["http://s.example/ce"]


def test_gzip_bomb_stops_at_the_cap(docs, fetcher) -> None:
    """A small .gz that inflates past the document cap is refused as too_large, not inflated."""
    bomb = gzip.compress(b"<urlset>" + b" " * 30_000_000)
    web = WebSource(DocumentFetcher(fetcher, max_bytes=1_000_000), sitemaps=[docs.add("/bomb.xml.gz", bomb)])
    assert list(web) == [] and [p.reason for p in web.problems] == ["too_large"]


def test_google_news_fields_become_hints(docs, fetcher) -> None:
    """news:title, news:publication_date, publication name and language are kept as hints."""
    body = f"""<?xml version="1.0"?>
<urlset {NS} xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
<url><loc>http://s.example/story</loc><news:news>
<news:publication><news:name>Loopback Times</news:name><news:language>en</news:language></news:publication>
<news:publication_date>2026-03-02T08:00:00Z</news:publication_date><news:title>Harbour plan</news:title>
</news:news></url><url><loc>http://s.example/plain</loc></url></urlset>"""
    web = _read(fetcher, docs.add("/news.xml", body))
    assert web.urls == ["http://s.example/story", "http://s.example/plain"]
    assert web.hints.get("http://s.example/story") == {
        "title": "Harbour plan",
        "published": "2026-03-02T08:00:00Z",
        "publication": "Loopback Times",
        "language": "en",
    }
    assert web.hints.get("http://s.example/plain") is None


def test_text_sitemap_yields_one_url_a_line(docs, fetcher) -> None:
    """A plain-text sitemap (one URL a line) is read."""
    url = docs.add("/sitemap.txt", "http://s.example/1\nhttp://s.example/2\n", content_type="text/plain")
    assert _read(fetcher, url).urls == ["http://s.example/1", "http://s.example/2"]


def test_bare_ampersand_in_loc_is_repaired(docs, fetcher) -> None:
    """An unescaped & in a query string (not well-formed XML) is read as the URL it meant."""
    url = docs.add("/amp.xml", urlset("http://s.example/?a=1&b=2", "http://s.example/ok"))
    assert _read(fetcher, url).urls == ["http://s.example/?a=1&b=2", "http://s.example/ok"]


def test_html_page_given_as_sitemap_is_refused(docs, fetcher) -> None:
    """An HTML page where a sitemap was expected is reported as not_a_sitemap."""
    url = docs.add("/page.html", "<!doctype html><html><body>hello</body></html>", content_type="text/html")
    web = _read(fetcher, url)
    assert web.urls == [] and [p.reason for p in web.problems] == ["not_a_sitemap"]


def test_entity_bomb_sitemap_is_refused_before_parsing(docs, fetcher) -> None:
    """A sitemap declaring entities is refused as xml_entities; a good sitemap next to it is read."""
    doctype = '<!DOCTYPE u [<!ENTITY a "aaaa">]>'
    bomb = f'<?xml version="1.0"?>{doctype}<urlset {NS}><url><loc>&a;</loc></url></urlset>'
    good = docs.add("/good.xml", urlset("http://s.example/good"))
    web = _read(fetcher, docs.add("/bomb.xml", bomb), good)
    assert web.urls == ["http://s.example/good"] and [p.reason for p in web.problems] == ["xml_entities"]


def test_missing_child_sitemap_does_not_stop_its_siblings(docs, fetcher) -> None:
    """A 404 child of an index is one problem; the other children are still read."""
    docs.add("/ok.xml", urlset("http://s.example/ok"))
    url = docs.add("/index.xml", index(docs.url("/gone.xml"), docs.url("/ok.xml")))
    web = _read(fetcher, url)
    assert web.urls == ["http://s.example/ok"] and [p.reason for p in web.problems] == ["http_404"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-le", "cp037"])
def test_entity_declaration_is_refused_in_any_encoding(docs, fetcher, encoding: str) -> None:
    """<!ENTITY in a UTF-16/32 (with or without BOM) or EBCDIC sitemap is refused as xml_entities."""
    label = encoding.split("-")[0] if encoding.startswith("utf") else encoding
    doctype = '<!DOCTYPE u [<!ENTITY a "http://s.example/bomb">]>'
    bomb = f'<?xml version="1.0" encoding="{label}"?>{doctype}<urlset {NS}><url><loc>&a;</loc></url></urlset>'
    good = docs.add("/good.xml", urlset("http://s.example/good"))
    web = _read(fetcher, docs.add("/wide.xml", bomb.encode(encoding)), good)
    assert web.urls == ["http://s.example/good"] and [p.reason for p in web.problems] == ["xml_entities"]


def test_sitemap_nested_past_the_parser_limit_is_a_problem_not_silence(docs, fetcher) -> None:
    """100,000 nested <url> (past libxml2's depth limit) yields nothing and says so: malformed_xml, with
    the parser's reason; the good sitemap beside it is still read."""
    deep = f'<?xml version="1.0"?><urlset {NS}>' + "<url>" * 100_000 + "<loc>http://s.example/deep</loc>"
    deep += "</url>" * 100_000 + "</urlset>"
    good = docs.add("/good.xml", urlset("http://s.example/good"))
    web = _read(fetcher, docs.add("/deep.xml", deep), good)
    assert web.urls == ["http://s.example/good"]
    assert [p.reason for p in web.problems] == ["malformed_xml"] and "depth" in web.problems[0].detail


def test_urls_without_a_direct_loc_are_a_problem(docs, fetcher) -> None:
    """<url> elements none of which holds a <loc> directly (nested one level too deep) are no_locations."""
    body = f'<?xml version="1.0"?><urlset {NS}>' + "<url><url><loc>http://s.example/x</loc></url></url>" * 3
    web = _read(fetcher, docs.add("/nested.xml", body + "</urlset>"))
    assert web.urls == [] and [p.reason for p in web.problems] == ["no_locations"]
    assert "3 <url> elements" in web.problems[0].detail


def test_truncated_sitemap_yields_what_it_has_and_reports_the_rest(docs, fetcher) -> None:
    """A sitemap cut mid-element yields the URLs before the cut, and reports malformed_xml."""
    body = urlset("http://s.example/1", "http://s.example/2")
    web = _read(fetcher, docs.add("/cut.xml", body[: body.index("http://s.example/2") + 5]))
    assert web.urls[:1] == ["http://s.example/1"]
    assert [p.reason for p in web.problems] == ["malformed_xml"]
