"""Sitemaps (sitemaps.org 0.9): urlset, sitemap index, plain-text sitemaps, Google News fields as hints.

Parsed with lxml with entity resolution, DTD loading and network access off (the document fetcher has
already refused entity declarations). A sitemap that is not well-formed only because of a bare ``&`` in a
``<loc>`` (common in the wild) is repaired and read; anything else that is not a sitemap raises
``SourceError`` with a reason.
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
    try:
        root = etree.fromstring(body, _parser(recover=False))
    except etree.XMLSyntaxError as exc:
        # Bare '&' in query strings is the common fault; repair only that, then read what is there.
        try:
            root = etree.fromstring(_BARE_AMP.sub(b"&amp;", body), _parser(recover=True))
        except etree.XMLSyntaxError:
            root = None
        if root is None or _local(root.tag) not in ("urlset", "sitemapindex"):
            raise SourceError("malformed_xml", f"{url}: {exc}") from None
    kind = _local(root.tag)
    if kind == "sitemapindex":
        locs = [_text(el, "{*}loc") for el in root.iterfind("{*}sitemap")]
        return Sitemap("index", [(loc, {}) for loc in locs if loc])
    if kind != "urlset":
        detail = "an HTML page" if kind.lower() == "html" else f"root element <{kind}>"
        raise SourceError("not_a_sitemap", f"{url}: {detail}, not <urlset> or <sitemapindex>")
    entries = []
    for el in root.iterfind("{*}url"):
        loc = _text(el, "{*}loc")
        if loc:
            entries.append((loc, _news_hints(el)))
    return Sitemap("urlset", entries)
