"""Celery tasks: thin wrappers that pass JSON primitives and call ``worker.runner.Pipeline``."""

from __future__ import annotations

import logging
import random
import time
from functools import cache
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_shutdown, worker_shutdown

from worker.celery_app import app, settings
from worker.errors import RateLimited, TransientError
from worker.runner import Job, Outcome, Pipeline, Terminal, outcome_for_error
from worker.state import observation_fields

log = logging.getLogger(__name__)


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
    try:
        page = p.fetch_job(j)
    except TransientError as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=retry_delay(self.request.retries, exc)) from None
        outcome = outcome_for_error(exc)
    except Terminal as end:
        outcome = end.outcome
    except Exception as exc:
        if not hasattr(exc, "reason"):
            log.exception("fetch of %s crashed", j.url)
        outcome = outcome_for_error(exc)
    else:
        process.apply_async((job, page))
        return "fetched"
    p.finish(j, outcome, observation_fields(fetch_seconds=time.monotonic() - started))
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
    try:
        outcome = p.process_job(j, page)
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
    p.finish(j, outcome, metrics)
    return outcome.state


@worker_process_shutdown.connect
@worker_shutdown.connect
def _publish_open_parts(**_: Any) -> None:
    # a part file is only visible to readers once published: do it before the process goes away
    if pipeline.cache_info().currsize:
        pipeline().store.close()
