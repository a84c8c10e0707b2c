"""The Celery app: configuration only. Tasks live in ``worker.tasks``, logic in ``worker.runner``.

``celery -A worker.celery_app worker -Q fetch,process`` and ``celery -A worker.celery_app flower`` work on
it. The broker is ``INGEST_BROKER_URL``; when that is unset, the embedded Redis under the data dir (which
``ingest worker`` / ``ingest run`` start).
"""

from __future__ import annotations

import os
import sys

from celery import Celery
from kombu import Exchange, Queue

from ingest_core.embedded import resolve_broker
from ingest_core.settings import Settings
from worker.kombu_fix import install as install_kombu_guards

install_kombu_guards()  # Redis restart and OOM must not end a worker: see worker/kombu_fix.py

settings = Settings.from_env()
"""Settings of this process, read once from the environment."""

FETCH_QUEUE = "fetch"
"""Queue of ``ingest.fetch`` (I/O bound: run with a threads pool)."""

PROCESS_QUEUE = "process"
"""Queue of ``ingest.process`` (CPU bound: run with prefork, one process per core)."""


def _broker() -> str:
    try:
        url, _ = resolve_broker(
            settings.broker_url, settings.data_dir, start=os.environ.get("INGEST_EMBEDDED_AUTOSTART") == "1"
        )
    except RuntimeError as exc:
        # a clear line for `celery -A worker.celery_app ...` run with nothing configured, not a traceback
        sys.exit(f"ingest: {exc}")
    return url


app = Celery("ingest", broker=_broker(), include=["worker.tasks"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # each queue on its own exchange and key: a bare Queue(name) would inherit the default exchange and
    # routing key, binding both queues to one key so each got the other's messages
    task_queues=[
        Queue(FETCH_QUEUE, Exchange(FETCH_QUEUE, type="direct"), routing_key=FETCH_QUEUE),
        Queue(PROCESS_QUEUE, Exchange(PROCESS_QUEUE, type="direct"), routing_key=PROCESS_QUEUE),
    ],
    task_default_queue=FETCH_QUEUE,
    task_routes={"ingest.fetch": {"queue": FETCH_QUEUE}, "ingest.process": {"queue": PROCESS_QUEUE}},
    broker_transport_options={
        "visibility_timeout": settings.visibility_timeout,
        # kombu sweeps unacked messages every interval * throttle seconds (default 10 * 10): a dead
        # worker's tasks would wait up to 100 s past the visibility timeout. Sweep every tenth of it
        # (1..10 s): one ZRANGE on the unacked index per worker per sweep.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    worker_send_task_events=True,
    task_send_sent_event=True,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    # memory bound for long-running process workers (prefork only; the fetch threads pool ignores both):
    # a child is replaced after N tasks, or after the task that takes it past the resident limit (KiB)
    worker_max_tasks_per_child=settings.process_max_tasks_per_child or None,
    worker_max_memory_per_child=settings.process_max_memory_mb * 1024 or None,
)
