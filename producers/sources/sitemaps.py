"""Sitemaps (sitemaps.org 0.9): urlset, sitemap index, plain-text sitemaps, Google News fields as hints.

Parsed with lxml with entity resolution, DTD loading and network access off (the document fetcher has
already refused entity declarations; a parsed tree that declares one anyway is refused again). A
sitemap that is not well-formed only because of a bare ``&`` in a ``<loc>`` (common in the wild) is repaired
and read; anything else that is not a sitemap raises ``SourceError`` with a reason.

A sitemap that yields nothing says why: one that is broken past repair (e.g. ``<url>`` nested 100,000
deep, past libxml2's depth limit) raises ``malformed_xml`` with the parser's message instead of reading as
empty; ``<url>``/``<sitemap>`` elements none of which has a direct ``<loc>`` raise ``no_locations``. One
that is broken but still gave URLs (recovered) carries the parser's message in ``Sitemap.problem``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from producers.sources.documents import SourceError

NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
"""Namespace of Google News sitemap fields."""

_BARE_AMP = re.compile(rb"&(?!(?:[a-zA-Z][a-zA-Z0-9]{0,31}|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});)")


@dataclass(slots=True)
class Sitemap:
    """A parsed sitemap: ``kind`` is ``urlset`` or ``index``; ``entries`` are (loc, hints)."""

    kind: str
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    problem: str = ""
    """Why some of the document may be missing (it was read in recovery mode), else ''."""


def _parser(recover: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        recover=recover,
        remove_comments=True,
        remove_pis=True,
    )


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _text(el: Any, path: str) -> str:
    found = el.find(path)
    return (found.text or "").strip() if found is not None else ""


def _news_hints(url_el: Any) -> dict[str, Any]:
    """Google News fields of one <url>: title, publication date, publication name and language."""
    news = url_el.find(f"{{{NEWS_NS}}}news")
    if news is None:
        return {}
    hints: dict[str, Any] = {}
    for key, path in (
        ("title", f"{{{NEWS_NS}}}title"),
        ("published", f"{{{NEWS_NS}}}publication_date"),
        ("publication", f"{{{NEWS_NS}}}publication/{{{NEWS_NS}}}name"),
        ("language", f"{{{NEWS_NS}}}publication/{{{NEWS_NS}}}language"),
        ("keywords", f"{{{NEWS_NS}}}keywords"),
    ):
        value = _text(news, path)
        if value:
            hints[key] = value
    return hints


def _parse_text(body: bytes) -> Sitemap:
    """A plain-text sitemap: one absolute URL a line."""
    text = body.decode("utf-8", errors="surrogateescape")
    locs = [line.strip() for line in text.splitlines() if line.strip()]
    if not locs or not all(loc.startswith(("http://", "https://")) for loc in locs[:20]):
        raise SourceError("not_a_sitemap", "neither XML nor a list of URLs")
    return Sitemap("urlset", [(loc, {}) for loc in locs])


def parse_sitemap(body: bytes, url: str) -> Sitemap:
    """Parse a sitemap document (already inflated); raises ``SourceError`` when it is not one."""
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head != b"<":
        try:
            return _parse_text(body)
        except SourceError as exc:
            raise SourceError(exc.reason, f"{url}: {exc.detail}") from None
    problem = ""
    try:
        root = etree.fromstring(body, _parser(recover=False))
    except etree.XMLSyntaxError as exc:
        # Bare '&' in query strings is the common fault: repair only that; if the repaired document is
        # still broken, read what recovery gives and say that something may be missing.
        repaired = _BARE_AMP.sub(b"&amp;", body)
        try:
            root = etree.fromstring(repaired, _parser(recover=False))
        except etree.XMLSyntaxError:
            problem = str(exc)
            try:
                root = etree.fromstring(repaired, _parser(recover=True))
            except etree.XMLSyntaxError:
                root = None
        if root is None or _local(root.tag) not in ("urlset", "sitemapindex"):
            raise SourceError("malformed_xml", f"{url}: {exc}") from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise SourceError("xml_entities", f"{url}: declares XML entities (refused: bombs and XXE)")
    kind = _local(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        detail = "an HTML page" if kind.lower() == "html" else f"root element <{kind}>"
        raise SourceError("not_a_sitemap", f"{url}: {detail}, not <urlset> or <sitemapindex>")
    child = "sitemap" if kind == "sitemapindex" else "url"
    elements = list(root.iterfind(f"{{*}}{child}"))
    entries = []
    for el in elements:
        loc = _text(el, "{*}loc")
        if loc:
            entries.append((loc, {} if kind == "sitemapindex" else _news_hints(el)))
    if not entries and problem:
        raise SourceError("malformed_xml", f"{url}: no <loc> read: {problem}")
    if not entries and elements:
        raise SourceError(
            "no_locations", f"{url}: {len(elements)} <{child}> elements, none with a <loc> directly inside"
        )
    return Sitemap("index" if kind == "sitemapindex" else "urlset", entries, problem)
