"""Sources: every way URLs arrive, each a plain iterator of URL strings, with no Celery import.

- :func:`iter_file` / :func:`iter_files`: files of URLs, one a line (``-`` is stdin), ``#`` comments;
- :class:`WebSource`: feeds (RSS 0.9x/1.0/2.0, Atom) and sitemaps (urlset, nested index, gzip, text,
  Google News fields as hints), fetched with the project's safe fetcher;
- positional URLs are just a list.

Hand any of them (or :func:`itertools.chain` of several) to ``producers.submit``.
"""

from __future__ import annotations

from producers.sources.documents import (
    MAX_DOCUMENT_BYTES,
    DocumentFetcher,
    MemoryValidators,
    RedisValidators,
    SourceError,
    ValidatorStore,
)
from producers.sources.feeds import parse_feed
from producers.sources.files import iter_file, iter_files, iter_lines
from producers.sources.sitemaps import parse_sitemap
from producers.sources.web import DEFAULT_MAX_DOCUMENTS, DEFAULT_SITEMAP_DEPTH, Problem, WebSource

__all__ = [
    "DEFAULT_MAX_DOCUMENTS",
    "DEFAULT_SITEMAP_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "DocumentFetcher",
    "MemoryValidators",
    "Problem",
    "RedisValidators",
    "SourceError",
    "ValidatorStore",
    "WebSource",
    "iter_file",
    "iter_files",
    "iter_lines",
    "parse_feed",
    "parse_sitemap",
]
