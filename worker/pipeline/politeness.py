"""Per-host politeness for the whole fleet: at most one request per host per interval, enforced in Redis.

The frontier (``ingest_core.frontier``) dispatches a host's URLs one interval apart; this slot is the
last guard, asked by every fetch right before its request: a Redis key set with ``NX PX`` inside one Lua
call, so the check and the reservation are atomic and the interval is measured on the Redis clock only
(machine clock skew does not matter). Tasks that run late and then close together wait out the rest of
the interval here (a fraction of a second), so two requests to one host are never closer than it.
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
