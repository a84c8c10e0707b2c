"""Celery tasks: thin wrappers that pass JSON primitives and call ``worker.runner.Pipeline``."""

from __future__ import annotations

import logging
import random
import threading
import time
from functools import cache
from typing import Any

import redis
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import (
    task_failure,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from kombu.exceptions import OperationalError

from ingest_core.errors import RateLimited, TransientError
from ingest_core.state import StateStore, observation_fields
from worker.celery_app import app, settings
from worker.pipeline.enrich import Enricher
from worker.reconcile import Reconciler
from worker.runner import Job, Outcome, Pipeline, Terminal, outcome_for_error, state_from_settings

log = logging.getLogger(__name__)

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError)
"""Redis (state store or broker) unreachable: never a URL's outcome, the task waits or goes back."""

REDIS_OUTAGE_WAIT = min(60.0, settings.visibility_timeout / 2)
"""Seconds a task rides out a Redis outage in place; under the visibility timeout, so that no second
delivery of the same message starts while this one still waits."""


def through_outage(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried while Redis is unreachable (a restart, a failover).

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
        except REDIS_DOWN as exc:
            if time.monotonic() >= deadline:
                raise Reject(f"Redis unreachable for {REDIS_OUTAGE_WAIT:.0f}s: {exc}", requeue=True) from exc
            log.warning("Redis unreachable (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _retry_later(task: Any, exc: TransientError, state: StateStore, url_id: str) -> None:
    """``task.retry`` with the publish error kept visible (Celery turns it into a drop-the-message Reject)."""
    countdown = retry_delay(task.request.retries, exc)
    state.touch(url_id, countdown)  # waiting on purpose: not a lost message
    try:
        task.retry(exc=exc, countdown=countdown)
    except Reject as rej:
        if isinstance(rej.reason, REDIS_DOWN):
            raise rej.reason from None
        raise


@cache
def pipeline() -> Pipeline:
    """One pipeline per process, built on first use (after the pool forks)."""
    return Pipeline.from_settings(settings)


def retry_delay(retries: int, exc: TransientError) -> float:
    """Exponential backoff with equal jitter, at least the server's Retry-After."""
    ceiling = min(settings.retry_backoff_max, settings.retry_backoff * 2**retries)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if isinstance(exc, RateLimited) and exc.retry_after:
        delay = max(delay, min(exc.retry_after, settings.retry_backoff_max))
    return delay


@app.task(name="ingest.fetch", bind=True, max_retries=settings.fetch_retries)
def fetch(self: Any, job: dict[str, Any]) -> str:
    """Fetch one URL; hand the page to ``ingest.process`` or record why it ended here."""
    p, j = pipeline(), Job.from_dict(job)
    started = time.monotonic()
    if not through_outage(p.state.is_pending, j.id, j.token):
        return "already_finished"  # a re-delivery whose first run ended the URL (its ack was lost)
    through_outage(p.state.touch, j.id)
    try:
        wait = through_outage(p.admit, j)
        if wait > 0:
            # the host's next slot is later: hand the URL back with a countdown instead of holding a thread
            through_outage(p.state.touch, j.id, wait)
            through_outage(fetch.apply_async, (j.to_dict(),), countdown=wait)
            return "deferred"
        page = through_outage(p.fetch_job, j)  # conditional GET reads validators from Redis
    except TransientError as exc:
        if self.request.retries < self.max_retries:
            through_outage(_retry_later, self, exc, p.state, j.id)
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
        through_outage(process.apply_async, (j.to_dict(), page))
        return "fetched"
    through_outage(p.finish, j, outcome, observation_fields(fetch_seconds=time.monotonic() - started))
    return outcome.state


@app.task(
    name="ingest.process",
    bind=True,
    soft_time_limit=settings.extract_timeout,
    time_limit=settings.extract_timeout + 15,
)
def process(self: Any, job: dict[str, Any], page: dict[str, Any]) -> str:
    """Extract, clean, dedupe, enrich and store one fetched page, then record its terminal state."""
    p, j = pipeline(), Job.from_dict(job)
    started = time.monotonic()
    if not through_outage(p.state.is_pending, j.id, j.token):
        return "already_finished"  # re-delivered after it ended: storing it again would write it twice
    through_outage(p.state.touch, j.id)
    try:
        # a Redis error mid-way (content dedupe) re-runs the stage: nothing is stored before dedupe
        outcome = through_outage(p.process_job, j, page)
    except Reject:
        raise
    except SoftTimeLimitExceeded:
        outcome = Outcome("failed", "extract_timeout", detail=f"over {settings.extract_timeout}s")
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
    return outcome.state


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


_sweeper_stop = threading.Event()


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    # every worker runs one; a lock in Redis lets one sweep per interval across the whole fleet
    from worker.ops.queues import queue_depths

    broker = app.conf.broker_url

    def depth() -> int:
        return sum(n for q, n in queue_depths(broker).items() if q in ("fetch", "process"))

    def send(job: dict[str, Any]) -> None:
        fetch.apply_async((job,))

    interval = max(1.0, min(60.0, settings.redeliver_after / 4))
    sweeper = Reconciler(_state(), send, depth, interval=interval)
    threading.Thread(target=sweeper.run, args=(_sweeper_stop,), name="reconcile", daemon=True).start()


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    _sweeper_stop.set()
