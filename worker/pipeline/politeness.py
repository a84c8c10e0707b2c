"""Per-host politeness for the whole fleet: at most one request per host per interval, enforced in Redis.

Every fetch thread on every machine asks :meth:`HostPoliteness.acquire` before it fetches. The slot is a
Redis key set with ``NX PX`` inside one Lua call, so the check and the reservation are atomic and the
interval is measured on the Redis clock only (machine clock skew does not matter). A caller told to wait
re-queues itself with that countdown instead of sleeping, so one slow or strict host never holds a thread
that other hosts could use.
"""

from __future__ import annotations

from typing import Any

# KEYS[1] = slot key, ARGV[1] = interval in ms. Returns 0 when the slot was taken, else ms to wait.
_ACQUIRE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
    return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    -- a slot key without expiry can only come from outside; never let it block a host forever
    redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
    return 0
end
if ttl == 0 then
    return 1
end
return ttl
"""


# KEYS[1] = next-free-turn key, ARGV: interval ms, max wait ms, not-before ms. Books the host's next free
# turn (not sooner than not-before from now) and returns the ms until it; returns -ms (nothing booked) when
# that turn is more than max wait ahead.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = math.max(now + tonumber(ARGV[3]), tonumber(redis.call('GET', KEYS[1]) or '0'))
local wait = slot - now
if wait > tonumber(ARGV[2]) then return -wait end
local nxt = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], nxt, 'PX', nxt - now + 1000)
return wait
"""


class HostPoliteness:
    """One request per host per ``interval`` seconds across every process sharing ``redis_client``."""

    def __init__(self, redis_client: Any, interval: float, key_prefix: str = "ingest") -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        if not key_prefix:
            raise ValueError("key_prefix must not be empty")
        self.redis = redis_client
        self.interval = float(interval)
        self.key_prefix = key_prefix
        self._script = redis_client.register_script(_ACQUIRE)
        self._reserve = redis_client.register_script(_RESERVE)

    def key(self, host: str) -> str:
        """The Redis key holding ``host``'s current slot."""
        return f"{self.key_prefix}:polite:{host.strip().lower().rstrip('.')}"

    def acquire(self, host: str, min_interval: float | None = None) -> float:
        """0.0 and the slot is reserved for this caller, or the seconds to wait before asking again.

        ``min_interval`` (a robots.txt Crawl-delay) lengthens the interval for this host, never shortens it.
        """
        if not host:
            raise ValueError("host must not be empty")
        interval = max(self.interval, min_interval or 0.0)
        if interval <= 0:
            return 0.0
        wait_ms = int(self._script(keys=[self.key(host)], args=[max(1, round(interval * 1000))]))
        return wait_ms / 1000.0

    def reserve(
        self, host: str, min_interval: float | None = None, max_wait: float = 60.0, not_before: float = 0.0
    ) -> tuple[float, bool]:
        """Book a future turn for a caller that ``acquire`` turned away: (seconds until it, True), or
        (seconds, False) when the next free turn is more than ``max_wait`` ahead (nothing booked).

        A turn is a time to come back and ``acquire`` again, not a licence to fetch: ``acquire`` alone keeps
        two requests an interval apart, even when tasks come back late and together. Turns only spread the
        waiting callers out, so N URLs waiting on one host come back about one per interval instead of all
        at once every interval.
        """
        if not host:
            raise ValueError("host must not be empty")
        interval = max(self.interval, min_interval or 0.0)
        if interval <= 0:
            return 0.0, True
        ms = int(
            self._reserve(
                keys=[self.key(host) + ":next"],
                args=[max(1, round(interval * 1000)), round(max_wait * 1000), round(not_before * 1000)],
            )
        )
        return abs(ms) / 1000.0, ms >= 0
