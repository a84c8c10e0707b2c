"""Producers: every way URLs get in. ``submit()`` is the one door they all go through.

``submit`` canonicalizes each URL (rejecting bad ones with a reason), claims it in the fleet-wide
frontier (a URL already seen is a ``duplicate``), and queues one ``ingest.fetch`` task per claimed URL.
It never imports the tasks module: messages are sent by task name.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from kombu.exceptions import OperationalError

from producers.canonical import canonicalize, url_id
from worker.errors import IngestError
from worker.state import Claim, StateStore, release

CHUNK_SIZE = 1000
"""URLs canonicalized, claimed and sent per round trip."""


class BrokerUnavailable(RuntimeError):
    """The broker or the state store cannot be reached: nothing (more) was queued."""


@dataclass
class SubmitResult:
    """What happened to each submitted URL at the door."""

    batch: str
    submitted: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(url, reason) for each URL refused before queueing."""

    def rejected_reasons(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason in self.rejected))


def check_broker(app: Any, timeout: float = 5.0) -> None:
    """Raise ``BrokerUnavailable`` unless the broker answers now."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except (OperationalError, OSError, redis.RedisError) as exc:
        raise BrokerUnavailable(f"broker {app.conf.broker_url!r} is unreachable: {exc}") from exc


def submit(
    urls: Iterable[str],
    *,
    source: str = "api",
    force: bool = False,
    state: StateStore | None = None,
    app: Any = None,
    batch: str | None = None,
    hints: dict[str, dict[str, Any]] | None = None,
    on_progress: Callable[[SubmitResult], None] | None = None,
    max_url_length: int = 2048,
) -> SubmitResult:
    """Validate, claim and queue ``urls`` (any iterable, streamed in chunks); never loses one silently.

    ``state`` and ``app`` default to the ones named by the environment. Raises ``BrokerUnavailable`` when
    the broker or Redis is down; claims whose messages were not sent are released first.
    """
    if app is None:
        from worker.celery_app import app as default_app

        app = default_app
    if state is None:
        from worker.celery_app import settings
        from worker.runner import state_from_settings

        state = state_from_settings(settings)
    check_broker(app)
    result = SubmitResult(batch=batch or uuid.uuid4().hex)
    iterator = iter(urls)
    with app.producer_or_acquire() as producer:
        while chunk := list(itertools.islice(iterator, CHUNK_SIZE)):
            _submit_chunk(chunk, result, state, app, producer, source, force, hints or {}, max_url_length)
            if on_progress:
                on_progress(result)
    return result


def _submit_chunk(
    chunk: list[str],
    result: SubmitResult,
    state: StateStore,
    app: Any,
    producer: Any,
    source: str,
    force: bool,
    hints: dict[str, dict[str, Any]],
    max_url_length: int,
) -> None:
    good: list[tuple[str, str]] = []
    bad: dict[str, list[str]] = {}
    for raw in chunk:
        try:
            canonical = canonicalize(raw, max_length=max_url_length)
        except IngestError as exc:
            bad.setdefault(exc.reason, []).append(raw)
            result.rejected.append((raw, exc.reason))
            continue
        good.append((raw, canonical))
    try:
        for reason, raws in bad.items():
            state.reject(len(raws), reason, batch=result.batch, urls=raws)
        claims = state.claim([url_id(c) for _, c in good], batch=result.batch, force=force)
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"state store unreachable: {exc}") from exc
    result.submitted += len(chunk)
    to_send: list[tuple[Claim, str, str]] = [
        (claim, raw, canonical) for (raw, canonical), claim in zip(good, claims, strict=True) if claim
    ]
    result.duplicates += len(good) - len(to_send)
    for i, (claim, raw, canonical) in enumerate(to_send):
        job = {
            "url": canonical,
            "id": claim.url_id,
            "token": claim.token,
            "batch": result.batch,
            "source": source,
            "hints": hints.get(raw, {}),
        }
        try:
            app.send_task("ingest.fetch", args=[job], producer=producer, queue="fetch")
        except (OperationalError, OSError, redis.RedisError) as exc:
            unsent = [c for c, _, _ in to_send[i:]]
            release(state, unsent, batch=result.batch)
            result.submitted -= len(unsent)
            raise BrokerUnavailable(
                f"broker lost while queueing: {exc}; {len(unsent)} URLs released"
            ) from exc
        result.accepted += 1
