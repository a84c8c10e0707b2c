"""Producers: every way URLs get in. ``submit()`` is the one door they all go through.

``submit`` canonicalizes each URL (rejecting bad ones with a reason) and claims it into the fleet-wide
frontier in Redis (``ingest_core.frontier``): a URL already seen is a ``duplicate``, one still pending from
an earlier submission is adopted by this batch. No broker message is sent here: the dispatchers in the
fetch workers publish fetch tasks when each URL's host is ready.

Speed: URLs are streamed in chunks of ``CHUNK_SIZE``; per chunk there is one Lua call (claim and enqueue
together) and nothing else.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis

from ingest_core.canonical import canonicalize, url_id
from ingest_core.errors import IngestError
from ingest_core.state import StateStore

CHUNK_SIZE = 1000
"""URLs canonicalized and claimed per round trip."""

REJECTED_KEPT = 10_000
"""Rejected URLs kept by URL in a ``SubmitResult``; beyond it only the reason counts grow (bad 2 GB files)."""


class BrokerUnavailable(RuntimeError):
    """The state store cannot be reached: nothing (more) was queued."""


@dataclass
class SubmitResult:
    """What happened to each submitted URL at the door."""

    batch: str
    submitted: int = 0
    accepted: int = 0
    duplicates: int = 0
    adopted: int = 0
    """URLs still pending from an earlier submission: not queued twice, but this batch waits for them."""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(url, reason) for the first ``REJECTED_KEPT`` URLs refused before queueing."""
    rejected_total: int = 0
    """URLs refused before queueing, all of them."""
    reasons: Counter[str] = field(default_factory=Counter)
    """Refusals per reason, all of them."""

    def rejected_reasons(self) -> dict[str, int]:
        return dict(self.reasons)

    def reject(self, url: str, reason: str) -> None:
        self.rejected_total += 1
        self.reasons[reason] += 1
        if len(self.rejected) < REJECTED_KEPT:
            self.rejected.append((url[:4096], reason))


def check_state(state: StateStore) -> None:
    """Raise ``BrokerUnavailable`` unless the state store answers now."""
    try:
        state.r.ping()
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"state store (Redis) is unreachable: {exc}") from exc


def check_broker_url(url: str, timeout: float = 5.0) -> None:
    """Raise ``BrokerUnavailable`` unless the broker at ``url`` (Redis or AMQP) answers now."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # kombu raises the transport's own errors
        raise BrokerUnavailable(f"broker {url!r} is unreachable: {exc}") from exc


def submit(
    urls: Iterable[str],
    *,
    source: str = "api",
    force: bool = False,
    state: StateStore | None = None,
    batch: str | None = None,
    hints: dict[str, dict[str, Any]] | None = None,
    on_progress: Callable[[SubmitResult], None] | None = None,
    max_url_length: int = 2048,
    strip_params: frozenset[str] = frozenset(),
    collect_ids: set[str] | None = None,
) -> SubmitResult:
    """Validate and claim ``urls`` (any iterable, streamed in chunks) into the frontier; never loses one.

    ``state`` defaults to the one named by the environment. ``hints`` maps a raw URL to what its source
    knew (title, date); ``strip_params`` adds query parameters to drop; ``collect_ids`` (a set) receives the
    id of every valid URL (``ingest run -o``). Raises ``BrokerUnavailable`` when
    Redis is down; every chunk before that is queued (each chunk is one atomic step).
    """
    if state is None:
        from ingest_core.settings import Settings
        from ingest_core.state import state_from_settings

        state = state_from_settings(Settings.from_env())
    check_state(state)
    result = SubmitResult(batch=batch or uuid.uuid4().hex)
    iterator = iter(urls)
    hints = {} if hints is None else hints
    while chunk := list(itertools.islice(iterator, CHUNK_SIZE)):
        _submit_chunk(chunk, result, state, source, force, hints, max_url_length, strip_params, collect_ids)
        if on_progress:
            on_progress(result)
    return result


def _submit_chunk(
    chunk: list[str],
    result: SubmitResult,
    state: StateStore,
    source: str,
    force: bool,
    hints: dict[str, dict[str, Any]],
    max_length: int,
    strip_params: frozenset[str],
    collect_ids: set[str] | None = None,
) -> None:
    jobs: list[dict[str, Any]] = []
    bad: dict[str, list[str]] = {}
    seen: set[str] = set()
    dup_in_chunk = 0
    for raw in chunk:
        try:
            canonical = canonicalize(raw, max_length=max_length, strip_params=strip_params)
        except IngestError as exc:
            bad.setdefault(exc.reason, []).append(raw)
            result.reject(raw, exc.reason)
            continue
        uid = url_id(canonical)
        if collect_ids is not None:
            collect_ids.add(uid)
        if uid in seen:  # the same URL twice in one chunk: the script would adopt it into its own batch
            dup_in_chunk += 1
            continue
        seen.add(uid)
        job = {"url": canonical, "id": uid, "host": urlsplit(canonical).hostname or "", "source": source}
        job["hints"] = hints.get(raw) or {}
        jobs.append(job)
    try:
        for reason, raws in bad.items():
            state.reject(len(raws), reason, batch=result.batch, urls=raws)
        if dup_in_chunk:
            state.count_duplicates(dup_in_chunk, batch=result.batch)
        done = state.frontier.enqueue(
            jobs,
            batch=result.batch,
            recrawl_ttl=state.recrawl_ttl,
            force=force,
            batch_ttl=state.batch_ttl,
        )
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"state store unreachable: {exc}") from exc
    result.submitted += len(chunk)
    result.accepted += len(done.accepted)
    result.adopted += len(done.adopted)
    result.duplicates += done.duplicates + dup_in_chunk
