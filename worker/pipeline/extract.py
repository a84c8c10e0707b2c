"""Extract stage: HTML page -> main text + metadata, with trafilatura."""

from __future__ import annotations

from dataclasses import dataclass, field

import trafilatura

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
"""Pages larger than this are truncated before parsing: bounds memory and parse time per task."""


@dataclass(slots=True)
class Extracted:
    """Main text of one page (one paragraph per line) plus the metadata found with it."""

    text: str
    title: str | None = None
    author: str | None = None
    published: str | None = None
    description: str | None = None
    sitename: str | None = None
    image: str | None = None
    tags: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Extractor:
    """Turns one HTML page into an ``Extracted`` record, or None when nothing is extractable."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, **options) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.max_bytes = max_bytes
        self.options = {"include_comments": False, "include_tables": True, **options}

    def extract(self, html: str, url: str | None = None) -> Extracted | None:
        """Extract main text and metadata from ``html``; None when the page has no main text."""
        if not html or not html.strip():
            return None
        if len(html) > self.max_bytes:
            html = html[: self.max_bytes]
        doc = trafilatura.bare_extraction(html, url=url, with_metadata=True, **self.options)
        if doc is None or not (doc.text or "").strip():
            return None
        return Extracted(
            text=doc.text,
            title=doc.title or None,
            author=doc.author or None,
            published=doc.date or None,
            description=doc.description or None,
            sitename=doc.sitename or None,
            image=doc.image or None,
            tags=list(doc.tags or []),
        )
