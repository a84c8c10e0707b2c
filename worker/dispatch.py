"""The dispatcher: takes URLs from the frontier when their host is ready and publishes their fetch tasks.

One runs in every fetch worker (a thread of the worker's main process); any number may run, since every
step is an atomic Lua call on the frontier. Each round it:

- registers this worker's fetch concurrency, so the fleet's capacity is known (``Frontier.capacity``);
- pauses while the process queue holds more than ``process_queue_max`` pages (backpressure: a slow
  process fleet cannot fill Redis with fetched pages), saying so in Redis for ``ingest stats``;
- leases URLs of ready hosts, at most the fleet's capacity minus the fetches already leased, so the
  ``fetch`` queue stays short, and publishes one task per URL;
- takes back leases that ran out (a task lost with a killed worker or a broker restart) and sends them
  again (``Frontier.expire``);
- sleeps until the next host is ready, or until a submit wakes it.

It never imports Celery: ``publish`` and ``queue_depth`` are given by the caller (``worker.tasks``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ingest_core.frontier import Frontier

log = logging.getLogger(__name__)

MAX_SLEEP = 0.25
"""Longest idle wait between two rounds (a submit wakes a dispatcher sooner)."""

EXPIRE_EVERY = 2.0
"""Seconds between two sweeps of leases that ran out."""


class Dispatcher:
    """Moves URLs from the frontier to the ``fetch`` queue as their hosts become ready."""

    def __init__(
        self,
        frontier: Frontier,
        *,
        worker: str,
        concurrency: int,
        publish_fetch: Callable[[list[dict[str, Any]]], None],
        publish_process: Callable[[list[dict[str, Any]]], None],
        queue_depth: Callable[[str], int],
        process_queue_max: int = 256,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.frontier = frontier
        self.worker = worker
        self.concurrency = concurrency
        self.publish_fetch = publish_fetch
        self.publish_process = publish_process
        self.queue_depth = queue_depth
        self.process_queue_max = process_queue_max
        self._registered = 0.0
        self._expired = 0.0

    def round(self) -> tuple[int, float]:
        """One round; returns (URLs dispatched, seconds to wait before the next round)."""
        now = time.monotonic()
        if now - self._registered > 5.0:
            self.frontier.register(self.worker, self.concurrency)
            self._registered = now
        if now - self._expired > EXPIRE_EVERY:
            self._expired = now
            self.sweep()
        if self.process_queue_max > 0:
            depth = self.queue_depth("process")
            if depth > self.process_queue_max:
                self.frontier.set_paused(f"process queue {depth} > {self.process_queue_max}")
                return 0, MAX_SLEEP
            self.frontier.set_paused(None)
        capacity = max(self.frontier.capacity(), self.concurrency)
        jobs, next_in = self.frontier.dispatch(capacity, capacity)
        if jobs:
            try:
                self.publish_fetch(jobs)
            except Exception:
                # the broker refused (down, or a full Redis): give the URLs back at once rather than let
                # them wait for their lease; a message that did get out finds its generation gone
                for job in jobs:
                    self.frontier.retry_later(job, None, int(job.get("attempts") or 0))
                raise
            return len(jobs), 0.0
        return 0, MAX_SLEEP if next_in is None else min(MAX_SLEEP, next_in)

    def sweep(self) -> int:
        """Take back leases that ran out; returns how many tasks were published again."""
        again = 0
        for stage, queue in (("f", "fetch"), ("p", "process")):
            jobs = self.frontier.expire(stage, queue_empty=self.queue_depth(queue) == 0)
            if jobs:
                self.publish_process(jobs)
                again += len(jobs)
        if again:
            log.warning("published %d process task(s) again whose lease ran out", again)
        return again

    def run(self, stop: threading.Event) -> None:
        """Rounds until ``stop`` is set; a failed round (Redis or the broker down) is retried, not fatal."""
        backoff = 0.1
        while not stop.is_set():
            try:
                sent, wait = self.round()
                backoff = 0.1
            except Exception as exc:  # Redis or broker away: ride it out like the tasks do
                log.warning("dispatch round failed (%s); again in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent or wait <= 0:
                continue
            try:
                self.frontier.wait_for_work(wait)
            except Exception:
                stop.wait(wait)
        try:
            self.frontier.unregister(self.worker)
        except Exception:
            pass
