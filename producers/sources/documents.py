"""Fetching feed and sitemap documents: the safe ``Fetcher``, gzip, XML safety, conditional GET.

Every document goes through ``ingest_core.fetch.Fetcher`` (the SSRF guard, timeouts and size caps of
page fetches). Bodies arrive as bytes; a gzip file (``sitemap.xml.gz``) is inflated here with the same cap,
so a gzip bomb stops at ``max_bytes``. A document that declares XML entities (billion laughs, external
entities) is refused before any parser sees it: feeds and sitemaps never need them. The check reads the
document as the XML parsers will (``xml_text``: BOM, the XML 1.0 Appendix F byte patterns, the encoding
declaration), so ``<!ENTITY`` in UTF-16, UTF-32 or EBCDIC is caught as surely as in UTF-8.

For watch mode, validators (ETag, Last-Modified) are kept in a ``ValidatorStore`` so an unchanged document
costs one 304. They are staged per poll and committed only once the URLs read from the documents were
submitted, so a poll that fails to queue does not turn into a 304 next time.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from ingest_core.errors import IngestError
from ingest_core.fetch import Fetcher

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
"""Cap on one feed or sitemap, after decompression (the sitemap protocol's own limit is 50 MB)."""


class SourceError(IngestError):
    """A feed or sitemap document could not be used; ``reason`` says why (``not_a_feed``, ``http_404``...)."""

    default_reason = "bad_document"


@dataclass(slots=True)
class Document:
    """A fetched document: its bytes, or ``not_modified`` (a 304 on a conditional GET)."""

    url: str
    body: bytes = b""
    not_modified: bool = False
    validators: dict[str, Any] = field(default_factory=dict)


class ValidatorStore(Protocol):
    """Where conditional-GET validators of documents live between polls."""

    def get(self, url: str) -> dict[str, Any]: ...

    def put(self, url: str, record: dict[str, Any]) -> None: ...


class MemoryValidators:
    """Validators in a dict: for one process (tests, a single ``watch``)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, url: str) -> dict[str, Any]:
        return dict(self.data.get(url, {}))

    def put(self, url: str, record: dict[str, Any]) -> None:
        self.data[url] = dict(record)


class RedisValidators:
    """Validators in the hash ``<prefix>:validators`` (field: 16-byte hash of the document URL)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "ingest") -> None:
        self.r = client
        self.key = f"{prefix}:validators"

    @staticmethod
    def _field(url: str) -> bytes:
        return hashlib.sha256(url.encode("utf-8", "surrogateescape")).digest()[:16]

    def get(self, url: str) -> dict[str, Any]:
        raw = self.r.hget(self.key, self._field(url))
        return json.loads(raw) if raw else {}

    def put(self, url: str, record: dict[str, Any]) -> None:
        self.r.hset(self.key, self._field(url), json.dumps(record))


def inflate(body: bytes, *, max_bytes: int, url: str) -> bytes:
    """``body`` itself, or its gunzipped content when it is gzip; never more than ``max_bytes``."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    out = bytearray()
    data = body
    try:
        # A .gz file may hold several members (cat a.gz b.gz); inflate them all, capped.
        while data:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise SourceError("too_large", f"{url}: more than {max_bytes} bytes once decompressed")
            if not d.eof:
                raise SourceError("bad_gzip", f"{url}: truncated gzip data")
            data = d.unused_data
    except zlib.error as exc:
        raise SourceError("bad_gzip", f"{url}: {exc}") from None
    return bytes(out)


# XML 1.0 Appendix F: the first four bytes of a document without a BOM name its encoding family.
_XML_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
_XML_SNIFF = {
    b"\x00\x00\x00<": "utf-32-be",
    b"<\x00\x00\x00": "utf-32-le",
    b"\x00<\x00?": "utf-16-be",
    b"<\x00?\x00": "utf-16-le",
    b"\x4c\x6f\xa7\x94": "cp037",  # EBCDIC "<?xm"
}
_XML_DECLARED = re.compile(r"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:\-]+)["']""")
_ENTITY_DECL = re.compile(r"<!\s*ENTITY", re.IGNORECASE)


def xml_text(body: bytes) -> str:
    """``body`` decoded the way an XML parser reads it; undecodable bytes become U+FFFD.

    BOM first, then the byte pattern of ``<?xml`` (UTF-16/32 without BOM, EBCDIC), then the encoding
    declaration, else UTF-8 (the XML default). An unknown declared encoding falls back to UTF-8.
    """
    family = "utf-8"
    for bom, name in _XML_BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace")
    family = _XML_SNIFF.get(body[:4], "utf-8")
    head = body[:1024].decode(family, errors="replace")
    declared = _XML_DECLARED.match(head.lstrip())
    encoding = family
    if declared:
        try:
            named = codecs.lookup(declared.group(1)).name
        except LookupError:
            named = family
        # a declaration cannot move a UTF-16/32 document to a byte-wide encoding, nor the reverse
        wide = family.startswith(("utf-16", "utf-32"))
        if wide == named.startswith(("utf-16", "utf-32")):
            encoding = family if wide else named
    return body.decode(encoding, errors="replace")


def check_xml_safety(body: bytes, url: str) -> None:
    """Refuse documents that declare entities (entity expansion bombs, external entities), in any encoding."""
    if b"<!ENTITY" in body or _ENTITY_DECL.search(xml_text(body)):
        raise SourceError("xml_entities", f"{url}: declares XML entities (refused: bombs and XXE)")


class DocumentFetcher:
    """Fetch feed and sitemap documents safely, with optional conditional GET."""

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        validators: ValidatorStore | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.fetcher = fetcher
        self.max_bytes = max_bytes
        self.validators = validators
        self.staged: dict[str, dict[str, Any]] = {}

    def get(self, url: str) -> Document:
        """Fetch ``url``; raises ``SourceError``/``IngestError`` with a reason when it cannot be used."""
        known = self.validators.get(url) if self.validators else {}
        result = self.fetcher.fetch_text(
            url,
            max_bytes=self.max_bytes,
            truncate=False,
            etag=known.get("etag"),
            last_modified=known.get("last_modified"),
            raw=True,
        )
        if result.status == 304:
            return Document(url, not_modified=True, validators=known)
        body = inflate(result.html.encode("latin-1"), max_bytes=self.max_bytes, url=url)
        check_xml_safety(body, url)
        pairs = (("etag", result.headers.get("etag")), ("last_modified", result.headers.get("last-modified")))
        fresh = {k: v for k, v in pairs if v}
        return Document(url, body=body, validators=fresh)

    def stage(self, url: str, record: dict[str, Any]) -> None:
        """Remember validators (and what else a 304 must recall) until :meth:`commit`."""
        if self.validators is not None and (record.get("etag") or record.get("last_modified")):
            self.staged[url] = record

    def commit(self) -> None:
        """Store staged validators: the URLs read from those documents are safely queued."""
        if self.validators is not None:
            for url, record in self.staged.items():
                self.validators.put(url, record)
        self.staged.clear()

    def discard(self) -> None:
        """Forget staged validators: the next poll fetches those documents in full again."""
        self.staged.clear()
