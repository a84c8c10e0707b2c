"""Sending again the jobs whose message was lost: the last guard of "every URL ends once".

acks_late and re-delivery cover a worker that dies holding a task. They do not cover the window in which
Celery's Redis transport has popped a message but not yet recorded it as unacknowledged: a worker killed,
or Redis restarted, right then loses the message (celery/kombu#305). Every queued job is therefore kept in
shared state until its terminal state (``StateStore.track``), and a sweeper sends again the ones that
nothing has touched for ``redeliver_after`` seconds. It only does so while both queues are empty, so that a
job still waiting behind a backlog is never sent twice; a lost one is sent once the backlog has drained.
Sending twice is harmless anyway: the claim token makes the second run count and store nothing new.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ingest_core.state import StateStore

log = logging.getLogger(__name__)


class Reconciler:
    """One sweep per interval across the fleet (a Redis lock), re-sending stale in-flight jobs."""

    def __init__(
        self,
        state: StateStore,
        send: Callable[[dict[str, Any]], None],
        queue_depth: Callable[[], int],
        *,
        interval: float,
        limit: int = 1000,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.state = state
        self.send = send
        self.queue_depth = queue_depth
        self.interval = interval
        self.limit = limit

    def sweep(self) -> int:
        """Re-send stale jobs now if this process holds this interval's lock; returns how many were sent."""
        lock = self.state.key("inflight", "sweep")
        if not self.state.r.set(lock, "1", nx=True, px=max(1, int(self.interval * 1000))):
            return 0  # another process swept during this interval
        if self.queue_depth() > 0:
            return 0
        sent = 0
        for job in self.state.stale_jobs(self.limit):
            if not self.state.is_pending(job["id"], job["token"]):
                self.state.untrack([job["id"]])  # ended meanwhile, or released
                continue
            self.send(job)
            self.state.touch(job["id"])
            sent += 1
        if sent:
            self.state.r.hincrby(self.state.key("counters"), "redelivered", sent)
            log.warning("re-sent %d job(s) whose message was lost", sent)
        return sent

    def run(self, stop: threading.Event) -> None:
        """Sweep every ``interval`` seconds until ``stop`` is set; a failed sweep is logged, not fatal."""
        while not stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:  # Redis down, broker down: the next interval tries again
                log.warning("reconcile sweep failed", exc_info=True)
