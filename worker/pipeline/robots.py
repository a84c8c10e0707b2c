"""robots.txt (RFC 9309) for the whole fleet: fetched once per origin, cached in Redis, parsed by protego.

Outcomes of the robots.txt fetch, as RFC 9309 section 2.3.1 says:

- 2xx: its rules apply (the first 500 KiB are parsed, the rest ignored);
- 4xx ("unavailable"), too many redirects: everything is allowed;
- 5xx, 429, timeouts, connection failures ("unreachable"): everything is disallowed for ``error_ttl``;
  :meth:`RobotsPolicy.check` then raises ``RateLimited("robots_unreachable", retry_after=...)`` rather than
  answering "disallowed", so the page is retried later instead of being skipped for good.
- the host cannot be reached at all (``HostUnreachable``: its name does not resolve right now, or it refuses
  connections): :meth:`RobotsPolicy.check` raises that same error, so the page ends with the real cause
  (``dns_error``, ``connection_refused``) after the error's own few quick retries, not as
  ``robots_unreachable`` after minutes of backoff. Cached only for a moment (``UNREACHABLE_HOST_TTL``),
  so concurrent checks share one attempt and every retry tries again.
- other permanent faults (DNS name not found, TLS, blocked address): allowed, cached for ``error_ttl``, so
  the page fetch itself fails with the real reason instead of a misleading ``robots_disallowed``.

Every robots.txt fetch has the fetcher's whole-exchange deadline: a server trickling its status line or
headers is ``unreachable`` once the deadline passes. Checks waiting on another process's fetch wait that
deadline plus ``LOCK_MARGIN``, not a fixed minute.

One process per origin fetches (a Redis lock); the others wait for its answer, so a new host sees one
robots.txt request from the fleet, not one per thread.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Protocol
from urllib.parse import urlsplit

from protego import Protego

from ingest_core.errors import HostUnreachable, InvalidURL, PermanentError, RateLimited, TransientError
from ingest_core.settings import DEFAULT_MAX_CRAWL_DELAY, DEFAULT_ROBOTS_ERROR_TTL, DEFAULT_ROBOTS_TTL

DEFAULT_ROBOTS_MAX_BYTES = 500 * 1024
"""Bytes of robots.txt parsed (RFC 9309 asks for at least 500 KiB)."""

UNREACHABLE_HOST_TTL = min(HostUnreachable.retry_delays or (1.0,)) / 4
"""Seconds a host that could not be reached (DNS, refused) stays cached: under its first quick retry, even
with that retry's jitter (which may halve it), so every retry tries the host again."""

LOCK_MARGIN = 5.0
"""Seconds past the fetch deadline that checks wait on another process fetching the same robots.txt
before they fetch it themselves (the holder died or hangs)."""

_LOCAL_TTL = 60.0
_LOCAL_MAX = 2048
_POLL = 0.05

# Delete the lock only if we still hold it (it may have expired and been taken by another process).
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RobotsFetcher(Protocol):
    """What robots needs from a fetcher: :meth:`ingest_core.fetch.Fetcher.fetch_text`."""

    def fetch_text(self, url: str, *, max_bytes: int | None = None, truncate: bool = True) -> Any: ...


def robots_url(url: str) -> tuple[str, str]:
    """(origin, robots.txt URL) of ``url``; robots.txt applies per scheme, host and port."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except (ValueError, AttributeError) as exc:
        raise InvalidURL("invalid_url", f"{url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or not host:
        raise InvalidURL("invalid_url", f"{url!r}: not an http(s) URL with a host")
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    netloc = shown if port in (None, default) else f"{shown}:{port}"
    origin = f"{scheme}://{netloc}"
    return origin, origin + "/robots.txt"


class RobotsPolicy:
    """Answers "may we fetch this URL, and how slowly?" from the origin's robots.txt."""

    def __init__(
        self,
        redis_client: Any,
        fetcher: RobotsFetcher,
        user_agent: str,
        ttl: float = DEFAULT_ROBOTS_TTL,
        key_prefix: str = "ingest",
        max_crawl_delay: float = DEFAULT_MAX_CRAWL_DELAY,
        *,
        error_ttl: float = DEFAULT_ROBOTS_ERROR_TTL,
        lock_timeout: float | None = None,
        max_bytes: int = DEFAULT_ROBOTS_MAX_BYTES,
    ) -> None:
        if not user_agent:
            raise ValueError("user_agent must not be empty")
        if ttl <= 0 or error_ttl <= 0:
            raise ValueError("ttl and error_ttl must be > 0")
        if max_crawl_delay < 0:
            raise ValueError("max_crawl_delay must be >= 0")
        self.redis = redis_client
        self.fetcher = fetcher
        self.user_agent = user_agent
        self.ttl = float(ttl)
        self.error_ttl = float(error_ttl)
        self.key_prefix = key_prefix
        self.max_crawl_delay = float(max_crawl_delay)
        if lock_timeout is None:
            # how long others wait on the process fetching robots.txt: its whole fetch, plus a margin
            lock_timeout = float(getattr(fetcher, "deadline", 55.0)) + LOCK_MARGIN
        self.lock_timeout = float(lock_timeout)
        self.max_bytes = int(max_bytes)
        self._unlock = redis_client.register_script(_UNLOCK)
        self._local: OrderedDict[str, tuple[float, dict[str, Any], Protego | None]] = OrderedDict()
        self._local_lock = threading.Lock()

    def check(self, url: str) -> tuple[bool, float | None]:
        """(allowed, crawl delay in seconds or None) for ``url``.

        Raises ``RateLimited("robots_unreachable")`` while the origin's robots.txt is unreachable,
        ``HostUnreachable`` (the fetch's own reason) when the host cannot be reached at all, and
        ``InvalidURL`` for a URL without an http(s) origin.
        """
        origin, rurl = robots_url(url)
        entry, parser = self._entry(origin, rurl)
        kind = entry["kind"]
        if kind == "host_unreachable":
            raise HostUnreachable(entry["reason"], f"robots.txt: {entry.get('detail', '')}")
        if kind == "unreachable":
            retry_after = max(1.0, float(entry.get("until", 0)) - time.time())
            raise RateLimited(
                "robots_unreachable", f"{rurl}: {entry.get('detail', '')}", retry_after=retry_after
            )
        if kind == "allow" or parser is None:
            return True, None
        allowed = bool(parser.can_fetch(url, self.user_agent))
        return allowed, self._delay(parser)

    # -- internals ----------------------------------------------------------------------------------------

    def _key(self, origin: str) -> str:
        return f"{self.key_prefix}:robots:{origin}"

    def _delay(self, parser: Protego) -> float | None:
        delays = []
        crawl_delay = parser.crawl_delay(self.user_agent)
        if crawl_delay is not None:
            delays.append(float(crawl_delay))
        rate = parser.request_rate(self.user_agent)
        if rate is not None and rate.requests:
            delays.append(rate.seconds / rate.requests)
        if not delays:
            return None
        return min(max(delays), self.max_crawl_delay)

    def _entry(self, origin: str, rurl: str) -> tuple[dict[str, Any], Protego | None]:
        now = time.monotonic()
        with self._local_lock:
            hit = self._local.get(origin)
            if hit is not None and hit[0] > now:
                return hit[1], hit[2]
        entry = self._shared_entry(origin, rurl)
        parser = Protego.parse(entry.get("body", "")) if entry["kind"] == "rules" else None
        local_ttl = min(_LOCAL_TTL, max(0.0, float(entry.get("until", 0)) - time.time()))
        with self._local_lock:
            self._local[origin] = (now + local_ttl, entry, parser)
            self._local.move_to_end(origin)
            while len(self._local) > _LOCAL_MAX:
                self._local.popitem(last=False)
        return entry, parser

    def _shared_entry(self, origin: str, rurl: str) -> dict[str, Any]:
        key = self._key(origin)
        lock_key = key + ":lock"
        give_up = time.monotonic() + self.lock_timeout
        while True:
            raw = self.redis.get(key)
            if raw is not None:
                return json.loads(raw)
            token = uuid.uuid4().hex
            if self.redis.set(lock_key, token, nx=True, px=int(self.lock_timeout * 1000)):
                try:
                    # another process may have cached it between our read and our lock
                    raw = self.redis.get(key)
                    if raw is not None:
                        return json.loads(raw)
                    entry, ttl = self._fetch(rurl)
                    self.redis.set(key, json.dumps(entry), px=max(1, int(ttl * 1000)))
                    return entry
                finally:
                    self._unlock(keys=[lock_key], args=[token])
            if time.monotonic() > give_up:
                # The holder is stuck past its own lock timeout; answer for ourselves without caching.
                return self._fetch(rurl)[0]
            time.sleep(_POLL)

    def _fetch(self, rurl: str) -> tuple[dict[str, Any], float]:
        """Fetch robots.txt and turn the outcome into a cache entry and its TTL."""
        try:
            result = self.fetcher.fetch_text(rurl, max_bytes=self.max_bytes, truncate=True)
        except HostUnreachable as exc:  # the page would fail the same way: say so now, by its name
            ttl = UNREACHABLE_HOST_TTL
            return self._make("host_unreachable", ttl, reason=exc.reason, detail=exc.detail), ttl
        except TransientError as exc:  # 5xx, 429, timeouts, resets: RFC 9309 "unreachable"
            return self._make(
                "unreachable", self.error_ttl, detail=f"{exc.reason}: {exc.detail}"
            ), self.error_ttl
        except PermanentError as exc:
            if exc.reason.startswith("http_4") or exc.reason in ("too_many_redirects", "redirect_loop"):
                return self._make("allow", self.ttl, detail=exc.reason), self.ttl
            return self._make("allow", self.error_ttl, detail=exc.reason), self.error_ttl
        if not 200 <= result.status < 300:
            return self._make("allow", self.ttl, detail=f"http_{result.status}"), self.ttl
        return self._make("rules", self.ttl, body=result.html), self.ttl

    @staticmethod
    def _make(kind: str, ttl: float, *, body: str = "", detail: str = "", reason: str = "") -> dict[str, Any]:
        entry: dict[str, Any] = {"kind": kind, "until": time.time() + ttl}
        if body:
            entry["body"] = body
        if reason:
            entry["reason"] = reason
        if detail:
            entry["detail"] = detail
        return entry
