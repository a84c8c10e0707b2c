"""The whole pipeline for one URL, in process, without Celery.

``Pipeline`` is built from ``Settings`` in exactly one place (``from_settings``); its stages are plain
objects. The Celery tasks call ``fetch_job`` (queue ``fetch``) and ``process_job`` (queue ``process``);
``run_one`` chains both for one URL, for tests, ``ingest extract`` and programs that embed us.

Outcomes: a document ends ``stored``, ``duplicate`` (with ``duplicate_of``), ``skipped:<reason>`` (not a
fault: not HTML, no text, robots) or ``failed:<reason>`` (a fault, after retries when transient).
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trafilatura

from ingest_core.canonical import canonicalize, url_id
from ingest_core.errors import IngestError, PermanentError, Skip
from ingest_core.fetch import Fetcher, FetchResult
from ingest_core.settings import Settings
from ingest_core.state import StateStore, state_from_settings
from worker.pipeline.clean import Cleaner
from worker.pipeline.dedupe import Deduper, content_hash
from worker.pipeline.enrich import Enricher
from worker.pipeline.extract import Extracted, Extractor
from worker.pipeline.politeness import HostPoliteness
from worker.pipeline.robots import RobotsPolicy
from worker.record import SCHEMA_VERSION, utc_now_iso
from worker.storage import Storage, open_storage
from worker.storage.retry import retry_storage

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """What travels in a task message: JSON primitives only."""

    url: str
    id: str
    token: str
    batch: str
    source: str = "api"
    hints: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    attempts: int = 0
    """Transient failures so far (retries are scheduled by the frontier)."""
    gen: str = ""
    """The frontier's lease generation this task runs under."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(slots=True)
class Outcome:
    """The terminal state of one URL, and its record when one was built."""

    state: str
    reason: str = ""
    record: dict[str, Any] | None = None
    detail: str = ""


_PAGE_FIELDS = ("url", "final_url", "status", "headers", "content_type", "encoding", "nbytes", "elapsed")


def pack_page(fetched: FetchResult) -> bytes:
    """A fetch result as one zlib-compressed JSON document: what the claim-check key in Redis holds."""
    data: dict[str, Any] = {k: getattr(fetched, k) for k in _PAGE_FIELDS}
    data["html"] = fetched.html
    data["fetched_at"] = utc_now_iso()
    # level 3, not 6: on 170 KiB pages it compresses in 1.0 ms instead of 2.2 ms (fetch-worker CPU, which
    # competes with extraction for the same cores) for a blob 12% larger (benchmarks/redis_memory.py)
    return zlib.compress(json.dumps(data, ensure_ascii=False).encode("utf-8"), 3)


def unpack_page(blob: bytes) -> dict[str, Any]:
    """Inverse of ``pack_page``: the page's fields (``html``, ``fetched_at``, status, headers, ...)."""
    return json.loads(zlib.decompress(blob))


def page_result(data: dict[str, Any]) -> tuple[FetchResult, str]:
    """An unpacked page as the fetch result and its fetch time."""
    return FetchResult(html=data["html"], **{k: data[k] for k in _PAGE_FIELDS}), data["fetched_at"]


def outcome_for_error(exc: BaseException) -> Outcome:
    """The terminal state a fault ends in: Skip -> skipped, other IngestError -> failed."""
    if isinstance(exc, Skip):
        return Outcome("skipped", exc.reason, detail=exc.detail)
    if isinstance(exc, IngestError):
        return Outcome("failed", exc.reason, detail=exc.detail)
    return Outcome("failed", "internal_error", detail=f"{type(exc).__name__}: {exc}")


class Pipeline:
    """fetch -> extract -> clean -> dedupe -> enrich -> store, with terminal states kept in ``state``."""

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        extractor: Extractor,
        cleaner: Cleaner,
        enricher: Enricher,
        store: Storage,
        state: StateStore,
        min_words: int = 25,
        keep_duplicates: bool = False,
        max_url_length: int = 2048,
        robots: RobotsPolicy | None = None,
        politeness: HostPoliteness | None = None,
        conditional_get: bool = False,
        near_dup_threshold: float = 0.8,
        extract_timeout: float = 0.0,
        storage_retry_max: float = 300.0,
    ) -> None:
        if min_words < 0:
            raise ValueError("min_words must be >= 0")
        if extract_timeout < 0:
            raise ValueError("extract_timeout must be >= 0 (0: no in-process limit)")
        self.fetcher = fetcher
        self.extractor = extractor
        self.cleaner = cleaner
        self.deduper = Deduper(state, threshold=near_dup_threshold)
        self.extract_timeout = extract_timeout
        self.storage_retry_max = storage_retry_max
        self.enricher = enricher
        self.store = store
        self.state = state
        self.min_words = min_words
        self.keep_duplicates = keep_duplicates
        self.max_url_length = max_url_length
        self.robots = robots
        self.politeness = politeness
        self.conditional_get = conditional_get

    @classmethod
    def from_settings(cls, s: Settings) -> Pipeline:
        """Build every stage from settings: the one place they are read for the pipeline."""
        if not s.state_url:
            raise ValueError(
                "no Redis for shared state: set INGEST_REDIS_URL or a redis:// INGEST_BROKER_URL"
            )
        state = state_from_settings(s)
        fetcher = Fetcher.from_settings(s)
        robots = None
        if s.respect_robots:
            robots = RobotsPolicy(
                state.r,
                fetcher,
                s.user_agent,
                ttl=s.robots_ttl,
                key_prefix=s.key_prefix,
                max_crawl_delay=s.max_crawl_delay,
                error_ttl=s.robots_error_ttl,
            )
        return cls(
            fetcher=fetcher,
            extractor=Extractor(max_bytes=s.max_bytes),
            cleaner=Cleaner(),
            enricher=Enricher(),
            store=storage_from_settings(s),
            state=state,
            min_words=s.min_words,
            keep_duplicates=s.keep_duplicates,
            max_url_length=s.max_url_length,
            robots=robots,
            politeness=HostPoliteness(state.r, s.host_interval, s.key_prefix)
            if s.host_interval > 0
            else None,
            # validators are kept only where re-fetching is routine: they cost Redis memory per URL
            conditional_get=s.recrawl_ttl > 0,
            near_dup_threshold=s.near_dup_threshold,
            extract_timeout=s.extract_timeout,
            storage_retry_max=s.storage_retry_max,
        )

    # -- the two halves the tasks call -------------------------------------------------------------

    def admit(self, job: Job) -> float:
        """robots.txt, then the host's request slot: 0 to fetch now, else seconds until the slot is free.

        The dispatcher already spaced this host's dispatches by its interval; the slot (one request per
        interval, atomic in Redis) only guards against tasks that run late and then close together. A
        Crawl-delay longer than the interval is handed to the frontier for the host's next dispatches.
        Raises ``Skip("robots_disallowed")``; robots.txt unreachable raises a transient error (retried).
        """
        delay = None
        host = urlsplit(job.url).hostname or ""
        if self.robots is not None:
            allowed, delay = self.robots.check(job.url)
            if not allowed:
                raise Skip("robots_disallowed", "robots.txt disallows this URL for our user agent")
            if delay and self.politeness is not None and delay > self.politeness.interval:
                self.state.frontier.set_host_interval(host, delay, self.robots.ttl)
        if self.politeness is None:
            return 0.0
        return self.politeness.acquire(host, delay)

    def fetch_job(self, job: Job) -> bytes:
        """Fetch the page; returns it packed for the process stage, or raises an IngestError."""
        etag = last_modified = None
        if self.conditional_get:
            etag, last_modified = self.state.validators(job.id)
        fetched = self.fetcher.fetch(job.url, etag=etag, last_modified=last_modified)
        if fetched.status == 304:
            raise Terminal(Outcome("duplicate", "not_modified"))
        return pack_page(fetched)

    def process_job(self, job: Job, page: dict[str, Any]) -> Outcome:
        """Extract, clean, dedupe, enrich and store a fetched page; returns its (unrecorded) outcome."""
        fetched, fetched_at = page_result(page)
        outcome = self.process_html(
            job, fetched.html, final_url=fetched.final_url, status=fetched.status, fetched_at=fetched_at
        )
        if self.conditional_get and outcome.state == "stored":
            self.state.set_validators(
                job.id, fetched.headers.get("etag"), fetched.headers.get("last-modified")
            )
        return outcome

    def process_html(
        self, job: Job, html: str, *, final_url: str, status: int, fetched_at: str, store: bool = True
    ) -> Outcome:
        """The CPU half of the pipeline on HTML already in hand.

        Extract and clean run under ``extract_timeout`` (``failed:extract_timeout``) when this is the
        main thread; the Celery task also has its own soft limit.
        """
        with time_limit(self.extract_timeout):
            doc = self.extractor.extract(html, final_url)
            if doc is None or not doc.text.strip():
                return Outcome("skipped", "no_text")
            doc = self.cleaner.clean(doc)
        record = build_record(
            job, doc, final_url=final_url, status=status, fetched_at=fetched_at, enricher=self.enricher
        )
        if record["word_count"] < self.min_words:
            return Outcome("skipped", "too_short", record, detail=f"{record['word_count']} words")
        if not store:
            return Outcome("stored", "", record)
        signature = base64.b64decode(record["near_dup_signature"])
        dup = self.deduper.check(job.id, doc.text, signature)
        if dup.duplicate_of is not None:
            record["duplicate_of"], record["similarity"] = dup.duplicate_of, dup.similarity
            if self.keep_duplicates:
                self.write_once(job, record)
            return Outcome("duplicate", dup.reason, record)
        self.write_once(job, record)
        return Outcome("stored", "", record)

    def write_once(self, job: Job, record: dict[str, Any]) -> None:
        """Store the record once per claim, riding out a storage outage (outside any extraction limit).

        Retried on ``StorageUnavailable`` for up to ``storage_retry_max`` seconds. A store that says where
        a record goes (JSONL, S3) has that place noted in Redis before the bytes go out, so a task delivered
        again after its worker died between the write and the terminal state finds the record there and
        does not write it a second time. PostgreSQL upserts by id and needs no note.
        """
        holds = getattr(self.store, "holds", None)

        def attempt() -> None:
            if holds is None:
                self.store.write(record)
                return
            where = self.state.written_at(job.id, job.token)
            if where is not None and holds(where, record["id"]):
                return  # an earlier delivery of this claim wrote it
            self.store.write(record, before=lambda at: self.state.mark_written(job.id, job.token, str(at)))

        retry_storage(attempt, max_wait=self.storage_retry_max)

    def finish(self, job: Job, outcome: Outcome, metrics: Sequence[Any] = ()) -> bool:
        """Record the terminal state once; False when a re-delivered task already did.

        ``metrics`` are ``ingest_core.state.observation_fields`` pairs (latencies, bytes), counted with it.
        """
        done = self.state.finish(
            job.id,
            job.token,
            outcome.state,
            outcome.reason,
            batch=job.batch,
            url=job.url,
            detail=outcome.detail,
            metrics=metrics,
        )
        self.state.forget_written(job.id)  # the write note of write_once has served once the URL ended
        return done

    # -- in process, no broker ----------------------------------------------------------------------

    def run_one(
        self, url: str, *, source: str = "api", batch: str = "inline", force: bool = False
    ) -> Outcome:
        """Run the whole pipeline for one URL in this process; the outcome is recorded in shared state."""
        try:
            canonical = canonicalize(url, max_length=self.max_url_length)
        except IngestError as exc:
            self.state.reject(1, exc.reason, batch=batch, urls=[url])
            return Outcome("skipped", exc.reason, detail=exc.detail)
        claim = self.state.claim([url_id(canonical)], batch=batch, force=force)[0]
        if claim is None:
            return Outcome("duplicate", "seen_url")
        job = Job(url=canonical, id=claim.url_id, token=claim.token, batch=batch, source=source)
        try:
            time.sleep(self.admit(job))  # in process, waiting for the host's slot is all there is to do
            outcome = self.process_job(job, unpack_page(self.fetch_job(job)))
        except Terminal as t:
            outcome = t.outcome
        except Exception as exc:  # every fault ends as a recorded state, never a crash
            outcome = outcome_for_error(exc)
        self.finish(job, outcome)
        return outcome


class Terminal(Exception):
    """A normal early end of the pipeline (e.g. not modified), carrying its outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.state)
        self.outcome = outcome


def build_record(
    job: Job, doc: Extracted, *, final_url: str, status: int, fetched_at: str, enricher: Enricher
) -> dict[str, Any]:
    """A record of schema ``SCHEMA_VERSION`` from a cleaned document and where it came from."""
    record: dict[str, Any] = {
        "id": job.id,
        "url": job.url,
        "final_url": final_url,
        "status": status,
        "fetched_at": fetched_at,
        "title": doc.title,
        "author": "; ".join(doc.authors) if doc.authors else doc.author,
        "authors": list(doc.authors),
        "published": doc.published,
        "language": None,
        "text": doc.text,
        "word_count": 0,
        "content_hash": content_hash(doc.text),
        "source": job.source,
        "schema_version": SCHEMA_VERSION,
        "description": doc.description,
        "sitename": doc.sitename,
        "image": doc.image,
        "tags": list(doc.tags),
        "modified": doc.modified,
        "canonical_url": doc.canonical_url,
        "categories": list(doc.categories),
        "extractor": doc.extra.get("extractor", EXTRACTOR),  # readability-lxml when extract fell back to it
        "duplicate_of": None,
        "similarity": None,
    }
    return enricher.enrich(record)


EXTRACTOR = {"name": "trafilatura", "version": trafilatura.__version__}
"""What made a record's text: trafilatura (our options) then our clean stage."""


class ExtractTimeout(PermanentError):
    """Extraction of one page ran past its time limit."""

    default_reason = "extract_timeout"


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``ExtractTimeout`` in this block after ``seconds`` (SIGALRM; main thread only, else no limit).

    Python code is interrupted at its next bytecode; a long C call (one lxml parse) finishes first.
    Libraries that catch the exception and go on (trafilatura logs "lxml parsing failed" and returns
    nothing) cannot hide it: once the alarm has fired, the block ends in ``ExtractTimeout`` whatever it
    returned or raised. An outer ``ITIMER_REAL`` is left alone: then this block runs without a limit.
    """
    if (
        seconds <= 0
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
        or signal.getitimer(signal.ITIMER_REAL)[0] > 0
    ):
        yield
        return
    fired = False
    detail = f"over {seconds:g}s"

    def _expired(signum: int, frame: Any) -> None:
        nonlocal fired
        fired = True
        # fire again soon: library code that catches Exception must not swallow the limit for good
        signal.setitimer(signal.ITIMER_REAL, 0.25)
        raise ExtractTimeout(detail=detail)

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except ExtractTimeout:
        raise
    except Exception as exc:
        if fired:  # the library turned our exception into its own
            raise ExtractTimeout(detail=detail) from exc
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if fired:  # the library caught it and returned (typically nothing): the page still ran out of time
        raise ExtractTimeout(detail=detail)


def storage_from_settings(s: Settings) -> Storage:
    """The record store named by ``INGEST_STORAGE_URL`` (directory, postgresql:// or s3://)."""
    return open_storage(
        s.storage_url,
        rotate_bytes=s.rotate_bytes,
        rotate_seconds=s.rotate_seconds,
        compress=s.storage_compress,
        fsync=s.storage_fsync,
        table=s.storage_table,
        pool_size=s.storage_pool_size,
        spool_dir=str(Path(s.data_dir) / "spool"),
    )
