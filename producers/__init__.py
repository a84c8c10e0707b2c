"""Producers: every way URLs get in. ``submit()`` is the one door they all go through.

``submit`` canonicalizes each URL (rejecting bad ones with a reason), claims it in the fleet-wide
frontier (a URL already seen is a ``duplicate``), and queues one ``ingest.fetch`` task per claimed URL.
It never imports the tasks module: messages are sent by task name.

Speed: URLs are streamed in chunks of ``CHUNK_SIZE``; per chunk there is one claim script call and one
broker round trip, because the chunk's messages are published inside kombu's ``Producer.batch()`` (a
Redis pipeline owned by kombu), built with ``app.amqp`` directly (the work ``send_task`` does per call,
routing lookups and ``saferepr`` of the arguments, is done once or given).
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from kombu.exceptions import BatchPublishError, OperationalError

from ingest_core.canonical import canonicalize, url_id
from ingest_core.errors import IngestError
from ingest_core.state import Claim, StateStore, release

CHUNK_SIZE = 1000
"""URLs canonicalized, claimed and sent per round trip."""

REJECTED_KEPT = 10_000
"""Rejected URLs kept by URL in a ``SubmitResult``; beyond it only the reason counts grow (bad 2 GB files)."""

FETCH_TASK = "ingest.fetch"
FETCH_QUEUE = "fetch"

_BROKER_ERRORS = (OperationalError, BatchPublishError, OSError, redis.RedisError)


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
    strip_params: frozenset[str] = frozenset(),
    sent_events: bool | None = None,
) -> SubmitResult:
    """Validate, claim and queue ``urls`` (any iterable, streamed in chunks); never loses one silently.

    ``state`` and ``app`` default to the ones named by the environment. ``hints`` maps a raw URL to what
    its source knew (title, date); ``strip_params`` adds query parameters to drop. ``sent_events``
    overrides ``task_send_sent_event`` (monitoring "task-sent" events double the messages published).
    Raises ``BrokerUnavailable`` when the broker or Redis is down; claims whose messages were not sent
    are released first.
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
    if sent_events is None:
        sent_events = bool(app.conf.task_send_sent_event)
    iterator = iter(urls)
    canon = _Canonicalizer(max_url_length, strip_params)
    with app.producer_or_acquire() as producer:
        queue = app.amqp.queues[FETCH_QUEUE]
        try:
            producer.maybe_declare(queue)  # once, so each message can skip the declare check
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"broker {app.conf.broker_url!r}: {exc}") from exc
        sender = _Sender(app, producer, queue, sent_events)
        while chunk := list(itertools.islice(iterator, CHUNK_SIZE)):
            _submit_chunk(chunk, result, state, sender, source, force, {} if hints is None else hints, canon)
            if on_progress:
                on_progress(result)
    return result


class _Canonicalizer:
    def __init__(self, max_length: int, strip_params: frozenset[str]) -> None:
        self.max_length = max_length
        self.strip_params = strip_params

    def __call__(self, raw: str) -> str:
        return canonicalize(raw, max_length=self.max_length, strip_params=self.strip_params)


class _Sender:
    """Publishes ``ingest.fetch`` messages through one producer, in one kombu batch per chunk."""

    def __init__(self, app: Any, producer: Any, queue: Any, sent_events: bool) -> None:
        self.amqp = app.amqp
        self.producer = producer
        self.queue = queue
        self.sent_events = sent_events

    def send_all(self, jobs: list[dict[str, Any]]) -> None:
        """Publish every job or raise; a raise means delivery of this call's jobs is uncertain."""
        # Two transport commands per message at most (LPUSH, and PUBLISH of the sent event): one flush.
        # Producer.batch() is kombu >= 5.7; older kombu publishes each message at once (slower, correct).
        batch = getattr(self.producer, "batch", None)
        with batch(max_size=2 * len(jobs) + 1) if batch else contextlib.nullcontext():
            for job in jobs:
                message = self.amqp.create_task_message(
                    str(uuid.uuid4()),
                    FETCH_TASK,
                    (job,),
                    {},
                    argsrepr=f"({job['url']!r},)",
                    kwargsrepr="{}",
                    create_sent_event=self.sent_events,
                )
                # retry=False: inside a batch nothing is sent until the flush, so retrying is moot.
                self.amqp.send_task_message(
                    self.producer, FETCH_TASK, message, queue=self.queue, declare=[], retry=False
                )


def _submit_chunk(
    chunk: list[str],
    result: SubmitResult,
    state: StateStore,
    sender: _Sender,
    source: str,
    force: bool,
    hints: dict[str, dict[str, Any]],
    canon: Callable[[str], str],
) -> None:
    good: list[tuple[str, str]] = []
    bad: dict[str, list[str]] = {}
    for raw in chunk:
        try:
            canonical = canon(raw)
        except IngestError as exc:
            bad.setdefault(exc.reason, []).append(raw)
            result.reject(raw, exc.reason)
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
    jobs = [
        {
            "url": canonical,
            "id": claim.url_id,
            "token": claim.token,
            "batch": result.batch,
            "source": source,
            "hints": hints.get(raw) or {},
        }
        for claim, raw, canonical in to_send
    ]
    try:
        state.track(jobs)  # before sending: a message lost later can be sent again from here
        sender.send_all(jobs)
    except _BROKER_ERRORS as exc:
        # The whole batch is uncertain: release it so the URLs can be submitted again. A message that did
        # get through then finds its claim gone and counts nothing (the finish script checks the token).
        unsent = [c for c, _, _ in to_send]
        release(state, unsent, batch=result.batch)
        state.untrack([c.url_id for c in unsent])
        result.submitted -= len(unsent)
        raise BrokerUnavailable(f"broker lost while queueing: {exc}; {len(unsent)} URLs released") from exc
    result.accepted += len(jobs)
