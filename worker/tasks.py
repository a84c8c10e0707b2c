"""Celery tasks: thin wrappers that pass JSON primitives and call ``worker.runner.Pipeline``.

``ingest.fetch`` gets a job the dispatcher leased from the frontier (``worker.dispatch``): it fetches the
page, keeps it in Redis under a claim-check key and sends ``ingest.process`` the ids only. A transient fault
goes back to the frontier with its backoff (no task waits, none is re-sent for politeness). Both tasks
start by checking that they still hold the URL's lease generation, so a late or duplicated message does
nothing. A URL that ends ``failed`` (or ``skipped``) raises ``URLEnded`` after its state is recorded, so
Flower shows it in its failed column with the state, reason and URL.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from functools import cache
from typing import Any

import redis
from celery.exceptions import Reject, TimeLimitExceeded
from celery.signals import (
    task_failure,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from kombu.exceptions import OperationalError

from ingest_core.errors import RateLimited, TransientError
from ingest_core.state import observation_fields, state_from_settings
from worker.celery_app import FETCH_QUEUE, PROCESS_QUEUE, app, settings
from worker.dispatch import Dispatcher
from worker.pipeline.enrich import Enricher
from worker.runner import Job, Outcome, Pipeline, Terminal, outcome_for_error, unpack_page

log = logging.getLogger(__name__)

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.OutOfMemoryError, OperationalError)
"""Redis (state store or broker) unreachable, or full (``maxmemory`` with noeviction refuses writes with
OOM): never a URL's outcome, the task waits or goes back. A Lua script refused for OOM is a plain
``ResponseError`` ("... -OOM command not allowed ..."): ``through_outage`` recognises it by its text."""

REDIS_OUTAGE_WAIT = min(60.0, settings.visibility_timeout / 2)
"""Seconds a task rides out a Redis outage in place; under the visibility timeout, so that no second
delivery of the same message starts while this one still waits."""


def through_outage(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried while Redis is unreachable (a restart, a failover) or full (OOM).

    Why not let the task fail: with acks_late a failed task is acked (or, on Redis, rejected without
    requeue, which drops it), so a URL whose finish() hit a dead Redis would stay pending for ever, and
    Celery's own retry() drops the message when it cannot publish the retry. Every call wrapped here is
    idempotent (finish is keyed by the claim token, content ownership is set-if-absent). Past
    ``REDIS_OUTAGE_WAIT`` the message goes back to its queue (``Reject(requeue=True)``); if Redis is still
    down even for that, it stays in the broker's unacked set and comes back after the visibility timeout.
    """
    deadline = time.monotonic() + REDIS_OUTAGE_WAIT
    delay = 0.1
    while True:
        try:
            return call(*args, **kwargs)
        except (*REDIS_DOWN, redis.ResponseError) as exc:
            if not isinstance(exc, REDIS_DOWN) and "OOM command not allowed" not in str(exc):
                raise  # a real error of the command, not Redis being full
            if time.monotonic() >= deadline:
                raise Reject(f"Redis unreachable for {REDIS_OUTAGE_WAIT:.0f}s: {exc}", requeue=True) from exc
            log.warning("Redis unreachable (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@cache
def pipeline() -> Pipeline:
    """One pipeline per process, built on first use (after the pool forks)."""
    return Pipeline.from_settings(settings)


def retry_delay(retries: int, exc: TransientError) -> float:
    """Exponential backoff with equal jitter, at least the server's Retry-After; a fault with its own
    ``retry_delays`` (an unreachable host) uses those."""
    own = getattr(exc, "retry_delays", None)
    if own:
        base = own[min(retries, len(own) - 1)]
        return base / 2 + random.uniform(0, base / 2)
    ceiling = min(settings.retry_backoff_max, settings.retry_backoff * 2**retries)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if isinstance(exc, RateLimited) and exc.retry_after:
        delay = max(delay, min(exc.retry_after, settings.retry_backoff_max))
    return delay


def max_retries(exc: TransientError) -> int:
    """How many times this fault is retried before the URL ends ``failed``."""
    own = getattr(exc, "retry_delays", None)
    return len(own) if own is not None else settings.fetch_retries


class URLEnded(Exception):
    """Raised after a URL's terminal state is recorded as failed or skipped: Flower's failed column."""


# what a guard sleep may cost a fetch thread before the URL goes back to the frontier instead
POLITENESS_SLEEP_MAX = 5.0


@app.task(name="ingest.fetch", bind=True, throws=(URLEnded,))
def fetch(self: Any, job: dict[str, Any]) -> str:
    """Fetch one leased URL; hand the page to ``ingest.process`` or record why it ended here."""
    p, j = pipeline(), Job.from_dict(job)
    frontier = p.state.frontier
    started = time.monotonic()
    if not through_outage(frontier.start, job, settings.fetch_lease):
        return "superseded"  # a newer dispatch holds the URL, or it ended (cancelled, a late copy)
    try:
        wait = through_outage(p.admit, j)
        if wait > POLITENESS_SLEEP_MAX:
            through_outage(frontier.retry_later, job, wait, j.attempts)
            return "later"
        if wait > 0:
            time.sleep(wait)  # the dispatcher spaced the dispatches; this only evens out their lateness
            wait = through_outage(p.admit, j)
            if wait > 0:
                through_outage(frontier.retry_later, job, wait, j.attempts)
                return "later"
        page = through_outage(p.fetch_job, j)  # conditional GET reads validators from Redis
    except TransientError as exc:
        if j.attempts < max_retries(exc):
            delay = retry_delay(j.attempts, exc)
            if through_outage(frontier.retry_later, job, delay, j.attempts + 1):
                return f"retry in {delay:.1f}s: {exc.reason} {j.url}"
            return "superseded"
        outcome = outcome_for_error(exc)
    except Terminal as end:
        outcome = end.outcome
    except Reject:
        raise
    except Exception as exc:
        if not hasattr(exc, "reason"):
            log.exception("fetch of %s crashed", j.url)
        outcome = outcome_for_error(exc)
    else:
        if not through_outage(frontier.handoff, job, page):
            return "superseded"
        through_outage(_send_process, [job])
        return f"fetched {j.url}"
    through_outage(p.finish, j, outcome, observation_fields(fetch_seconds=time.monotonic() - started))
    return _ended(outcome, j)


def _ended(outcome: Outcome, job: Job) -> str:
    """The task's result: the outcome as text; failed and skipped raise so Flower counts them failed."""
    text = f"{outcome.state}{':' + outcome.reason if outcome.reason else ''} {job.url}"
    if outcome.state in ("failed", "skipped"):
        raise URLEnded(text + (f" ({outcome.detail[:200]})" if outcome.detail else ""))
    return text


def _send_process(jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        process.apply_async((job,), queue=PROCESS_QUEUE, argsrepr=f"({job['url']!r},)")


def _send_fetch(jobs: list[dict[str, Any]]) -> None:
    with app.producer_or_acquire() as producer:
        for job in jobs:
            fetch.apply_async((job,), queue=FETCH_QUEUE, producer=producer, argsrepr=f"({job['url']!r},)")


PROCESS_RUN_LEASE = settings.process_lease
"""Seconds a started process task holds its URL without a heartbeat; a running task renews it every
third of that, so once the lease runs out its worker is gone (killed) and the URL's process task is
published again."""


class _Heartbeat:
    """Renews a running task's lease from a daemon thread until stopped (a killed process stops it too)."""

    def __init__(self, frontier: Any, job: dict[str, Any], lease: float) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(frontier, job, lease), daemon=True)

    def _run(self, frontier: Any, job: dict[str, Any], lease: float) -> None:
        while not self.stop.wait(lease / 3):
            try:
                if not frontier.renew(job, lease):
                    return
            except Exception:  # Redis away: the task itself rides the outage out; try again next beat
                log.debug("lease renewal failed", exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


@app.task(
    name="ingest.process",
    bind=True,
    throws=(URLEnded,),
    # no soft limit over the whole task: extraction has its own in-process limit (runner.time_limit), and a
    # record write riding out a storage outage (up to INGEST_STORAGE_RETRY_MAX) is not a slow extraction;
    # the hard limit is only a backstop for a child stuck in C code
    time_limit=settings.extract_timeout + settings.storage_retry_max + 60,
)
def process(self: Any, job: dict[str, Any]) -> str:
    """Extract, clean, dedupe, enrich and store one fetched page, then record its terminal state."""
    p, j = pipeline(), Job.from_dict(job)
    frontier = p.state.frontier
    started = time.monotonic()
    if not through_outage(frontier.start, job, PROCESS_RUN_LEASE):
        return "superseded"  # re-delivered after it ended, or a newer generation holds it
    blob = through_outage(frontier.page, j.id)
    if blob is None:  # its claim check expired: fetch the page again
        through_outage(frontier.retry_later, job, None, j.attempts)
        return f"page gone, fetching again {j.url}"
    page = unpack_page(blob)
    try:
        with _Heartbeat(frontier, job, PROCESS_RUN_LEASE):
            # a Redis error mid-way (content dedupe) re-runs the stage: nothing is stored before dedupe
            outcome = through_outage(p.process_job, j, page)
    except Reject:
        raise
    except Exception as exc:
        if not hasattr(exc, "reason"):
            log.exception("processing of %s crashed", j.url)
        outcome = outcome_for_error(exc)
    # counted once per URL, by the finish that ends it, so re-deliveries do not skew the histograms
    metrics = observation_fields(
        fetch_seconds=page.get("elapsed"),
        process_seconds=time.monotonic() - started,
        fetched_bytes=page.get("nbytes"),
    )
    through_outage(p.finish, j, outcome, metrics)
    return _ended(outcome, j)


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    # a new pool child (at start, or replaced by max tasks/memory per child) loads its models before its
    # first task, so that loading does not count against that task's time limit
    Enricher().warm_up()


@task_failure.connect(sender=process)
def _hard_time_limit(exception: BaseException | None = None, args: Any = None, **_: Any) -> None:
    # past the hard limit the pool kills the child: no finish() ran there. Celery calls this in the parent
    # (which then acks the message), so record the end here or the URL stays pending for ever.
    if isinstance(exception, TimeLimitExceeded) and args:
        j = Job.from_dict(args[0])
        detail = f"hard time limit ({exception}): process killed"
        end = ("failed", "extract_timeout")
        through_outage(_state().finish, j.id, j.token, *end, batch=j.batch, url=j.url, detail=detail)


@cache
def _state() -> Any:
    return state_from_settings(settings)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _publish_open_parts(**_: Any) -> None:
    # a part file is only visible to readers once published: do it before the process goes away
    if pipeline.cache_info().currsize:
        pipeline().store.close()


_dispatch_stop = threading.Event()


@worker_ready.connect
def _start_dispatcher(sender: Any = None, **_: Any) -> None:
    # every worker that consumes the fetch queue runs one dispatcher thread; they share the frontier safely
    from worker.ops.queues import queue_depths

    # the sender is the worker's Consumer (celery.apps.worker sends it); a WorkController has .consumer
    consumer = sender if hasattr(sender, "task_consumer") else getattr(sender, "consumer", None)
    queues = {q.name for q in getattr(getattr(consumer, "task_consumer", None), "queues", None) or []}
    if not queues:
        queues = set(getattr(app.amqp.queues, "consume_from", None) or {})
    if queues and FETCH_QUEUE not in queues:
        return  # a process-only worker dispatches nothing
    broker = app.conf.broker_url

    def depth(name: str) -> int:
        return int(queue_depths(broker).get(name, 0) or 0)

    controller = getattr(consumer, "controller", None) or sender
    concurrency = int(getattr(controller, "concurrency", 0) or settings.fetch_concurrency)
    dispatcher = Dispatcher(
        _state().frontier,
        worker=str(getattr(consumer, "hostname", "") or f"worker-{id(sender)}"),
        concurrency=concurrency,
        publish_fetch=_send_fetch,
        publish_process=_send_process,
        queue_depth=depth,
        process_queue_max=settings.process_queue_max,
    )
    threading.Thread(target=dispatcher.run, args=(_dispatch_stop,), name="dispatch", daemon=True).start()


@worker_shutdown.connect
def _stop_dispatcher(**_: Any) -> None:
    _dispatch_stop.set()
