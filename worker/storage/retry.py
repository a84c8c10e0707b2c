"""Record writes ride out a storage outage in place: bounded retries with exponential backoff and jitter.

A full disk, an I/O error, a database restart or an S3 outage raise ``StorageUnavailable``; the write is
tried again until it goes through or ``max_wait`` seconds (``INGEST_STORAGE_RETRY_MAX``) have passed, and
only then does the error reach the caller (the URL ends ``failed:storage_unavailable``, a dead letter
``ingest retry-failed`` can send again). The pipeline calls this after extraction, outside its time limit.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from ingest_core.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.2
"""Seconds before the first retry; doubles at each retry."""

MAX_DELAY = 10.0
"""Longest pause between two tries, so a write goes through within about this long of storage coming back."""


def retry_storage(
    call: Callable[[], T],
    *,
    max_wait: float,
    first: float = FIRST_DELAY,
    cap: float = MAX_DELAY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> T:
    """``call()``, tried again on ``StorageUnavailable`` with jittered backoff for up to ``max_wait`` s."""
    if max_wait < 0:
        raise ValueError("max_wait must be >= 0")
    deadline = clock() + max_wait
    delay = first
    tries = 0
    while True:
        try:
            return call()
        except StorageUnavailable as exc:
            tries += 1
            left = deadline - clock()
            if left <= 0:
                log.error("storage unavailable for %.0fs (%d tries), giving up: %s", max_wait, tries, exc)
                raise
            pause = min(left, delay / 2 + jitter() * delay / 2)
            log.warning("storage unavailable (%s); retry %d in %.1fs, %.0fs left", exc, tries, pause, left)
            sleep(pause)
            delay = min(cap, delay * 2)
