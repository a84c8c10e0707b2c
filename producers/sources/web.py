"""Page URLs read from feeds and sitemaps on the web: an iterator, with hints and problems on the side.

Each start document is fetched with a ``DocumentFetcher`` and read as a sitemap when its root element says
so (``<urlset>``/``<sitemapindex>``), else as a feed, so a feeds file may list both. A sitemap index is
followed depth-first up to ``max_depth`` levels, never visiting one document twice in a traversal (an index
that lists itself is reported as ``sitemap_loop``). A document that fails (404, timeout, HTML, malformed,
entity bomb...) becomes a ``Problem`` with a reason; the other documents still go through.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ingest_core.errors import IngestError
from producers.sources.documents import DocumentFetcher, SourceError
from producers.sources.feeds import parse_feed
from producers.sources.sitemaps import parse_sitemap

DEFAULT_SITEMAP_DEPTH = 3
"""Levels of sitemap indexes followed below a start document (index -> index -> index -> urlset)."""

DEFAULT_MAX_DOCUMENTS = 1000
"""Documents fetched in one traversal at most, whatever the indexes list."""

_SITEMAP_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(urlset|sitemapindex)[\s>]")


@dataclass(frozen=True, slots=True)
class Problem:
    """A feed or sitemap document that could not be read, with the reason."""

    url: str
    reason: str
    detail: str = ""


class OnceHints(dict):
    """Hints per page URL, each handed out once: ``get`` pops, so a long traversal does not pile them up."""

    def get(self, key: Any, default: Any = None) -> Any:
        return self.pop(key, default)


class WebSource:
    """Iterate page URLs from ``feeds`` and ``sitemaps`` (either kind is detected from the document)."""

    def __init__(
        self,
        documents: DocumentFetcher,
        *,
        feeds: Iterable[str] = (),
        sitemaps: Iterable[str] = (),
        max_depth: int = DEFAULT_SITEMAP_DEPTH,
        max_documents: int = DEFAULT_MAX_DOCUMENTS,
    ) -> None:
        if max_depth < 0:
            raise ValueError("max_depth must be >= 0")
        if max_documents < 1:
            raise ValueError("max_documents must be >= 1")
        self.documents = documents
        self.starts = [(u, "feed") for u in feeds] + [(u, "sitemap") for u in sitemaps]
        self.max_depth = max_depth
        self.max_documents = max_documents
        self.hints: OnceHints = OnceHints()
        self.problems: list[Problem] = []
        self.counts: Counter[str] = Counter()
        """documents, not_modified, urls, and one count per problem reason."""

    def problem(self, url: str, reason: str, detail: str = "") -> None:
        self.problems.append(Problem(url, reason, detail))
        self.counts[f"problem:{reason}"] += 1

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for url, declared in self.starts:
            yield from self._visit(url.strip(), declared, 0, seen)

    def _visit(self, url: str, declared: str, depth: int, seen: set[str]) -> Iterator[str]:
        if url in seen:
            self.problem(url, "sitemap_loop", "document already read in this pass (an index lists itself?)")
            return
        if len(seen) >= self.max_documents:
            self.problem(url, "too_many_documents", f"more than {self.max_documents} documents in one pass")
            return
        seen.add(url)
        try:
            doc = self.documents.get(url)
            self.counts["documents"] += 1
            if doc.not_modified:
                self.counts["not_modified"] += 1
                children = doc.validators.get("children")
                entries = [(c, {}) for c in children] if children else []
                kind = "index" if children else "unchanged"
            else:
                kind, entries = self._parse(doc.body, url, declared)
                record = dict(doc.validators)
                if kind == "index":
                    record["children"] = [loc for loc, _ in entries]
                self.documents.stage(url, record)
        except IngestError as exc:  # SourceError and every fetch error: a reason, never a crash
            self.problem(url, exc.reason, exc.detail)
            return
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the others
            self.problem(url, "unreadable", f"{url}: {type(exc).__name__}: {exc}")
            return
        if kind == "index":
            if depth >= self.max_depth:
                self.problem(url, "sitemap_too_deep", f"index nested deeper than {self.max_depth} levels")
                return
            for child, _ in entries:
                yield from self._visit(child, "sitemap", depth + 1, seen)
            return
        for loc, hints in entries:
            self.counts["urls"] += 1
            if hints:
                self.hints[loc] = hints
            yield loc

    def _parse(self, body: bytes, url: str, declared: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
        if _SITEMAP_ROOT.search(body[:8192]) or (declared == "sitemap" and not body.lstrip()[:1] == b"<"):
            sitemap = parse_sitemap(body, url)
            if sitemap.problem:  # recovered: the URLs read go through, what may be missing is reported
                self.problem(url, "malformed_xml", f"{url}: read in recovery mode: {sitemap.problem}")
            return sitemap.kind, sitemap.entries
        try:
            entries = list(parse_feed(body, url))
        except SourceError as exc:
            if declared != "sitemap":
                raise
            # Asked for a sitemap: say so, whatever the feed parser thought of it.
            raise SourceError(
                "not_a_sitemap", f"{url}: neither a sitemap nor a feed ({exc.detail})"
            ) from None
        return "feed", entries
