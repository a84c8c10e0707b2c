"""The error tree of article-ingest.

Faults are exceptions; normal drops (duplicate, empty page) are not. Library exceptions are converted
into these classes at the boundary where they enter (the fetch stage for requests/urllib3), so the rest
of the pipeline only ever sees this tree::

    IngestError                 base; every error has a stable short ``reason`` code
    ├── InvalidURL              a submitted URL is unusable (bad scheme, no host, too long, ...)
    ├── TransientError          may succeed later: retried with backoff and jitter
    │   ├── RateLimited         429/503 with a Retry-After the retry honours
    │   ├── HostUnreachable     name does not resolve right now, or connection refused: a few quick retries
    │   └── StorageUnavailable  the record store is away (disk full, I/O error, database or S3 down)
    ├── PermanentError          retrying cannot help: failed at once
    │   └── BlockedAddress      the host resolves to a network we do not fetch from
    └── Skip                    not a fault: the page is not for us (not HTML, empty...) -> ``skipped``

``reason`` is what shows in stats, failure logs and records (``failed:http_404``, ``skipped:not_html``).
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class: carries a stable short reason code and a human detail."""

    default_reason = "error"

    def __init__(self, reason: str | None = None, detail: str = "") -> None:
        self.reason = reason or self.default_reason
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)


class InvalidURL(IngestError):
    """A submitted URL was rejected before queueing."""

    default_reason = "invalid_url"


class TransientError(IngestError):
    """A fault that may go away: timeouts, resets, 5xx, 429."""

    default_reason = "transient"

    retry_delays: tuple[float, ...] | None = None
    """This fault's own retry schedule: the delay in seconds before each retry, and so at most
    ``len(retry_delays)`` retries. None: the settings' exponential backoff and ``fetch_retries``."""


class RateLimited(TransientError):
    """The server asked us to come back later; ``retry_after`` is in seconds when it said so."""

    default_reason = "http_429"

    def __init__(self, reason: str | None = None, detail: str = "", retry_after: float | None = None):
        super().__init__(reason, detail)
        self.retry_after = retry_after


class HostUnreachable(TransientError):
    """The host cannot be reached at all: its name does not resolve right now (``dns_error``, e.g. offline)
    or nothing listens (``connection_refused``). Retried twice within seconds, not with minutes of backoff:
    a host that is not there now is rarely there a minute later, and the user should hear why quickly."""

    default_reason = "connection_refused"
    retry_delays = (1.0, 3.0)


class StorageUnavailable(TransientError):
    """The record store cannot take a write now (ENOSPC, EIO, a database or S3 outage): retried."""

    default_reason = "storage_unavailable"


class PermanentError(IngestError):
    """A fault that retrying will not fix: 4xx, too large, too many redirects, bad TLS."""

    default_reason = "permanent"


class BlockedAddress(PermanentError):
    """The URL's host resolves to a private, loopback, link-local or otherwise refused address."""

    default_reason = "blocked_address"


class Skip(IngestError):
    """Not a fault: the document is dropped with a reason (not HTML, no text, robots...)."""

    default_reason = "skipped"
