"""RSS 0.9x/1.0/2.0 and Atom feeds, parsed with feedparser: entry links plus title/date hints."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import feedparser

from producers.sources.documents import SourceError

_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.IGNORECASE | re.DOTALL)


def _link(entry: Any) -> str:
    """The entry's page: ``link``, else the first alternate link, else an id that is a URL (Atom)."""
    if entry.get("link"):
        return entry["link"]
    for link in entry.get("links", ()):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link["href"]
    ident = entry.get("id", "")
    return ident if ident.startswith(("http://", "https://")) else ""


def _hints(entry: Any, feed_url: str) -> dict[str, Any]:
    hints: dict[str, Any] = {"feed": feed_url}
    if entry.get("title"):
        hints["title"] = entry["title"]
    published = entry.get("published") or entry.get("updated")
    if published:
        hints["published"] = published
    return hints


def parse_feed(body: bytes, url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(link, hints) per entry; relative links resolved against ``url``. Raises ``SourceError``.

    A feed with XML errors whose entries could still be read yields them (feedparser's loose parser);
    a document that is HTML, or not a feed at all, raises ``not_a_feed``; a broken one ``malformed_xml``.
    """
    parsed = feedparser.parse(body, response_headers={"content-location": url})
    if not parsed.entries:
        if _HTML_START.match(body[:4096]):
            raise SourceError("not_a_feed", f"{url}: an HTML page, not a feed")
        if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] != b"<":
            raise SourceError("not_a_feed", f"{url}: not XML")
        if parsed.get("bozo"):
            raise SourceError("malformed_xml", f"{url}: {parsed.get('bozo_exception')}")
        if not parsed.get("version"):
            raise SourceError("not_a_feed", f"{url}: no RSS or Atom feed in the document")
    for entry in parsed.entries:
        link = _link(entry)
        if link:
            yield link.strip(), _hints(entry, url)
