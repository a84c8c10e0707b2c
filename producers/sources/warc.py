"""WARC (and ARC) files as a source of fetched pages: each page goes straight to the process stage.

:func:`read_warc` streams one archive record by record (WARC 1.0/1.1 and ARC, gzip per record or not, with
warcio) in constant memory: at most one page body (``max_bytes``) is held. It yields a :class:`WarcPage`
for each ``response`` record holding an HTML payload with HTTP 200, and a :class:`WarcProblem` for every
other record: skipped when it is not for us (``warc_request``, ``warc_metadata``, ``warc_revisit``,
``not_html``, ``http_404``, ...), failed when the archive is broken there (``warc_truncated``,
``warc_bad_length``, ``warc_corrupt``, ``bad_http``, ``too_large``, ``not_warc``, ``warc_unreadable``).
A broken record never ends the file: the reader looks for the next record start (a gzip member or a
``WARC/1.`` line) and goes on from there.

:class:`WarcIngest` submits them: pages through the same door as URLs (canonical URL, seen filter, batch
counters) with :meth:`ingest_core.frontier.Frontier.enqueue_fetched`, which keeps each claimed page under
its claim-check key and leases it to the process stage; the caller publishes the returned jobs as
``ingest.process`` tasks (producers know no Celery app). Problems are counted with their reason.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator

from ingest_core.canonical import canonicalize, url_id
from ingest_core.errors import IngestError
from ingest_core.fetch import decode_html
from ingest_core.pages import pack_page
from ingest_core.state import StateStore

PAGE_CHUNK = 50
"""Pages claimed per round trip (a packed page is tens of KB: 50 keep one Lua call a few MB)."""

CHUNK_BYTES = 8 << 20
"""... or fewer, once their bodies add up to this: big pages do not make a chunk of 50 x INGEST_MAX_BYTES."""

REMOTE_WARC_MAX_BYTES = 1 << 30
"""Cap on a remote WARC: it is fetched whole with the safe fetcher (which buffers), then read like a file."""

REMOTE_WARC_DEADLINE = 1800.0
"""Seconds one remote WARC download may take."""

HEADER_SLACK = 64 * 1024
"""Bytes of HTTP headers allowed on top of ``max_bytes`` before a record is too large unread."""

HTML_TYPES = ("text/html", "application/xhtml+xml")
"""Content types read as pages; a payload without one is sniffed."""

_RESYNC_BLOCK = 1 << 16
_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE)
_HTTP = re.compile(r"^HTTP/\d(\.\d)?$")


@dataclass(slots=True)
class WarcPage:
    """A fetched page as the archive recorded it."""

    url: str
    """The record's WARC-Target-URI."""
    status: int
    headers: dict[str, str]
    """HTTP response headers, names lower-case."""
    content_type: str
    body: bytes
    """The HTTP payload, de-chunked and decompressed."""
    fetched_at: str
    """The record's WARC-Date, ISO 8601 UTC with ``Z``."""


@dataclass(slots=True)
class WarcProblem:
    """A record that is not a page for us (``failed`` False) or where the archive is broken (True)."""

    reason: str
    url: str
    failed: bool = False
    detail: str = ""


class _Iterator(ArchiveIterator):
    INC_RECORD = ""  # warcio prints a warning for a Content-Length it finds wrong: we count it instead


def read_warc(fh: BinaryIO, *, max_bytes: int, name: str = "") -> Iterator[WarcPage | WarcProblem]:
    """Every record of one WARC or ARC file (a seekable binary file), as a page or a problem."""
    head = fh.read(4096)
    kind = _sniff(head)
    if kind is None:
        yield WarcProblem("not_warc", f"{name}@0", failed=True, detail=repr(head[:40]))
        return
    gz = head[:2] == b"\x1f\x8b"
    offset = 0
    while offset is not None:
        fh.seek(offset)
        it = _Iterator(fh, arc2warc=True)
        start = offset
        offset = None
        try:
            for record in it:
                start = it.offset
                errors = it.err_count
                item = _item(record, max_bytes)
                it.read_to_end()
                broken = None
                nxt = it.next_line
                if it.err_count > errors or (kind == "warc" and nxt and not nxt.startswith(b"WARC/")):
                    broken = WarcProblem("warc_bad_length", _uri(record), True, "no record follows its block")
                elif record.raw_stream.limit > 0:
                    missing = record.raw_stream.limit
                    broken = WarcProblem("warc_truncated", _uri(record), True, f"{missing} bytes missing")
                if broken is not None:
                    # the next record may start inside what this one claimed: look for it from here
                    yield broken
                    offset = _next_record(fh, start + 1, gz)
                    break
                if item is not None:
                    yield item
        except Exception as exc:  # warcio, zlib and our own parsing all raise their own errors
            # the record that failed starts where the last one read ended (or is the one being read)
            start = max(start, it.offset)
            yield WarcProblem("warc_corrupt", f"{name}@{start}", True, f"{type(exc).__name__}: {exc}"[:300])
            offset = _next_record(fh, start + 1, gz)


def _sniff(head: bytes) -> str | None:
    """``warc``, ``arc`` or None (not an archive) from a file's first bytes."""
    data = head
    if head[:2] == b"\x1f\x8b":
        try:
            data = zlib.decompressobj(31).decompress(head, 64)
        except zlib.error:
            return None
    data = data.lstrip()
    if data.startswith(b"WARC/"):
        return "warc"
    if data.startswith(b"filedesc://"):
        return "arc"
    return None


def _next_record(fh: BinaryIO, pos: int, gz: bool) -> int | None:
    """Offset of the next gzip member (gz) or ``WARC/1.`` line at or after ``pos``; None at the end."""
    marker = b"\x1f\x8b\x08" if gz else b"\nWARC/1."
    skip = 0 if gz else 1
    fh.seek(max(0, pos - skip))
    base, tail = max(0, pos - skip), b""
    while block := fh.read(_RESYNC_BLOCK):
        data = tail + block
        at = data.find(marker)
        if at >= 0:
            return base - len(tail) + at + skip
        tail = data[-(len(marker) - 1) :]
        base += len(block)
    return None


def _uri(record: Any) -> str:
    return record.rec_headers.get_header("WARC-Target-URI") or ""


def _item(record: Any, max_bytes: int) -> WarcPage | WarcProblem | None:
    """What one record is; None for a warcinfo record (the file's own description)."""
    kind, uri = record.rec_type, _uri(record)
    if kind == "warcinfo":
        return None
    if kind != "response":
        return WarcProblem(f"warc_{kind}", uri)
    http = record.http_headers
    if http is None:
        return WarcProblem("not_http", uri)
    code = http.get_statuscode() or ""
    if not _HTTP.match(http.protocol or "") or not (code.isdigit() and len(code) == 3):
        return WarcProblem("bad_http", uri, True, f"status line {http.protocol!r} {http.statusline!r}")
    if code != "200":
        return WarcProblem(f"http_{code}", uri)
    headers: dict[str, str] = {}
    for key, value in http.headers:
        key = key.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    content_type = headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime and mime not in HTML_TYPES:
        return WarcProblem("not_html", uri, detail=mime)
    if (record.length or 0) > max_bytes + HEADER_SLACK:
        return WarcProblem("too_large", uri, True, f"record of {record.length} bytes > {max_bytes}")
    body = record.content_stream().read(max_bytes + 1)
    if len(body) > max_bytes:
        return WarcProblem("too_large", uri, True, f"payload over {max_bytes} bytes")
    if not mime and b"<html" not in body[:2048].lower():
        return WarcProblem("not_html", uri, detail="no content type, not HTML")
    return WarcPage(uri, 200, headers, content_type, body, _warc_date(record))


def _warc_date(record: Any) -> str:
    raw = record.rec_headers.get_header("WARC-Date") or ""
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        when = datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def pack(page: WarcPage, url: str) -> bytes:
    """The page packed for the process stage under its canonical ``url``."""
    match = _CHARSET.search(page.content_type)
    html, encoding = decode_html(page.body, match.group(1) if match else None, html=True)
    return pack_page(
        html=html,
        url=url,
        final_url=page.url,
        status=page.status,
        headers=page.headers,
        content_type=page.content_type,
        encoding=encoding,
        nbytes=len(page.body),
        fetched_at=page.fetched_at,
    )


def iter_warc_list(files: Iterable[str]) -> Iterator[str]:
    """Paths and http(s) URLs of WARCs, one a line (``#`` comments); a ``.gz`` list is read gunzipped."""
    for name in files:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(name, "rt", encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield line


@dataclass
class WarcIngest:
    """Submit the pages of WARC files into the frontier's process stage, counting every other record.

    ``publish`` sends the returned jobs as ``ingest.process`` tasks; ``wait_room`` (optional) is called
    before each chunk and may block while the process queue is full; ``fetcher`` (an
    ``ingest_core.fetch.Fetcher``) reads remote WARCs, with its SSRF rules.
    """

    state: StateStore
    publish: Callable[[list[dict[str, Any]]], None]
    max_bytes: int
    batch: str = field(default_factory=lambda: uuid.uuid4().hex)
    force: bool = False
    max_url_length: int = 2048
    strip_params: frozenset[str] = frozenset()
    fetcher: Any = None
    wait_room: Callable[[], None] | None = None
    collect_ids: set[str] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    """Per WARC source: pages, accepted, duplicates, adopted, and ``skipped:``/``failed:`` reasons."""

    def __post_init__(self) -> None:
        from producers import SubmitResult

        if self.max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.result = SubmitResult(batch=self.batch)

    def submit(self, locations: Iterable[str]) -> Any:
        """Read every WARC (path or http(s) URL) in turn; returns the ``producers.SubmitResult``."""
        for location in locations:
            name = location.rstrip("/").rsplit("/", 1)[-1] or location
            source = f"warc:{name}"
            try:
                fh = self._open(location)
            except IngestError as exc:
                self._problems([WarcProblem(exc.reason, location, True, exc.detail)], source)
                continue
            except OSError as exc:
                self._problems([WarcProblem("warc_unreadable", location, True, str(exc))], source)
                continue
            with fh:
                self._read(read_warc(fh, max_bytes=self.max_bytes, name=name), source)
        return self.result

    def _open(self, location: str) -> BinaryIO:
        if location.startswith(("http://", "https://")):
            if self.fetcher is None:
                raise OSError(f"{location}: no fetcher for remote WARCs")
            self.fetcher.deadline = max(self.fetcher.deadline, REMOTE_WARC_DEADLINE)
            got = self.fetcher.fetch_text(location, max_bytes=REMOTE_WARC_MAX_BYTES, truncate=False, raw=True)
            if got.status != 200:
                raise IngestError(f"http_{got.status}", location)
            return io.BytesIO(got.html.encode("latin-1"))
        return Path(location).open("rb")

    def _read(self, items: Iterator[WarcPage | WarcProblem], source: str) -> None:
        pages: list[WarcPage] = []
        problems: list[WarcProblem] = []
        size = 0
        for item in items:
            if isinstance(item, WarcPage):
                pages.append(item)
                size += len(item.body)
            else:
                problems.append(item)
            if len(pages) >= PAGE_CHUNK or size >= CHUNK_BYTES or len(problems) >= 1000:
                self._flush(pages, problems, source)
                pages, problems, size = [], [], 0
        self._flush(pages, problems, source)

    def _flush(self, pages: list[WarcPage], problems: list[WarcProblem], source: str) -> None:
        if problems:
            self._problems(problems, source)
        if not pages:
            return
        if self.wait_room is not None:
            self.wait_room()
        jobs, blobs, seen, dup_in_chunk = [], [], set(), 0
        for page in pages:
            try:
                canonical = canonicalize(
                    page.url, max_length=self.max_url_length, strip_params=self.strip_params
                )
            except IngestError as exc:
                self._problems([WarcProblem(exc.reason, page.url)], source)
                continue
            uid = url_id(canonical)
            if self.collect_ids is not None:
                self.collect_ids.add(uid)
            if uid in seen:
                dup_in_chunk += 1
                continue
            seen.add(uid)
            jobs.append(
                {"url": canonical, "id": uid, "host": urlsplit(canonical).hostname or "", "source": source}
            )
            jobs[-1]["hints"] = {}
            blobs.append(pack(page, canonical))
        if dup_in_chunk:
            self.state.count_duplicates(dup_in_chunk, batch=self.batch)
        done, publish = self.state.frontier.enqueue_fetched(
            jobs,
            blobs,
            batch=self.batch,
            recrawl_ttl=self.state.recrawl_ttl,
            force=self.force,
            batch_ttl=self.state.batch_ttl,
        )
        if publish:
            self.publish(publish)
        r = self.result
        r.submitted += len(jobs) + dup_in_chunk
        r.accepted += len(done.accepted)
        r.adopted += len(done.adopted)
        r.duplicates += done.duplicates + dup_in_chunk
        self.counts["pages"] += len(jobs) + dup_in_chunk
        self.counts["accepted"] += len(done.accepted)
        self.counts["duplicates"] += done.duplicates + dup_in_chunk
        self.counts["adopted"] += len(done.adopted)

    def _problems(self, problems: list[WarcProblem], source: str) -> None:
        groups: dict[tuple[bool, str], list[WarcProblem]] = {}
        for p in problems:
            groups.setdefault((p.failed, p.reason), []).append(p)
        for (failed, reason), group in groups.items():
            urls = [p.url for p in group]
            if failed:
                _count_failed(self.state, group, reason, batch=self.batch, source=source)
            else:
                self.state.reject(len(group), reason, batch=self.batch, urls=urls)
            self.counts[f"{'failed' if failed else 'skipped'}:{reason}"] += len(group)
            self.result.submitted += len(group)
            self.result.rejected_total += len(group)
            self.result.reasons[reason] += len(group)


def _count_failed(
    state: StateStore, problems: list[WarcProblem], reason: str, *, batch: str, source: str
) -> None:
    """Count broken archive records as ``failed:<reason>`` (submitted, never claimed), each in the log."""
    pipe = state.r.pipeline(transaction=True)
    n = len(problems)
    for key in (state.key("counters"), state.key("batch", batch)):
        pipe.hincrby(key, "submitted", n)
        pipe.hincrby(key, "failed", n)
        pipe.hincrby(key, f"failed:{reason}", n)
    pipe.expire(state.key("batch", batch), state.batch_ttl)
    for p in problems:
        event = {
            "url": p.url[:2048],
            "state": "failed",
            "reason": reason,
            "detail": f"{source}: {p.detail}"[:500],
            "at": time.time(),
            "batch": batch,
        }
        pipe.xadd(
            state.key("failures"), {"event": json.dumps(event)}, maxlen=state.failures_max, approximate=True
        )
    pipe.execute()
