"""Per-host politeness for the whole fleet: at most one request per host per interval, enforced in Redis.

The frontier (``ingest_core.frontier``) dispatches a host's URLs one interval apart; this slot is the
last guard, asked by every fetch right before its request: a Redis key set with ``NX PX`` inside one Lua
call, so the check and the reservation are atomic and the interval is measured on the Redis clock only
(machine clock skew does not matter). Tasks that run late and then close together wait here (a fraction
of a second), so two requests to one host are never closer than nine tenths of the interval, and the
average stays the interval.
"""

from __future__ import annotations

from typing import Any

# KEYS[1] = slot key, ARGV[1] = interval in ms. Returns 0 when the slot was taken, else ms to wait.
# KEYS[1] = slot key (the host's last booked request time, ms), ARGV[1] = interval in ms. Returns 0 when
# the request may go now (and books it), else the ms to wait. A request up to a tenth of the interval
# early is let through and booked at its scheduled time, and a late one is booked when it happens, so the
# dispatcher's schedule sets the pace: lateness does not add up from one request to the next.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local raw = redis.call('GET', KEYS[1]) or ''
local last, held = string.match(raw, '^(%d+):(%d+)$')
last, held = tonumber(last), tonumber(held)
if last and last > now + math.max(interval, held) then last = nil end  -- from outside: never block for ever
local step = interval
if last then
  step = math.max(interval, held)  -- a Crawl-delay booked with the last request still holds
  local earliest = last + step - math.floor(step / 10)
  if now < earliest then return earliest - now end
end
local booked = now
if last and last + step > now then booked = last + step end
redis.call('SET', KEYS[1], booked .. ':' .. interval, 'PX', booked - now + interval + 1000)
return 0
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
