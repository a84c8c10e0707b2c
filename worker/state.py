"""Shared state in Redis, behind a small interface: the URL frontier, terminal states and counters.

Every URL id has one entry in the hash ``<prefix>:urls`` (16 raw bytes of field, a short value), whose
value is ``q:<token>`` while queued and ``<s|d|k|f>:<time>`` once terminal. Two Lua scripts make the
transitions atomic, so two producers submitting one URL at once queue it once, and a re-delivered task
that finishes a URL again counts nothing twice. Counters are kept fleet-wide and per submission batch;
``submitted == stored + duplicate + skipped + failed + pending`` holds at every moment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

TERMINAL_STATES = ("stored", "duplicate", "skipped", "failed")
"""The four ends of a submitted URL."""

_STATE_CODE = {"stored": "s", "duplicate": "d", "skipped": "k", "failed": "f"}

# ARGV: now, recrawl_ttl, force, batch_ttl, then url ids. Returns one token (claimed) or false per id.
_CLAIM = """
local now, ttl, force, bttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1', tonumber(ARGV[4])
local out, dup = {}, 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local v = redis.call('HGET', KEYS[1], id)
  local ok = false
  if not v then ok = true
  else
    local st = string.sub(v, 1, 1)
    if st == 'f' then ok = true
    elseif st ~= 'q' then
      if force then ok = true
      elseif ttl > 0 and now - tonumber(string.sub(v, 3)) >= ttl then ok = true end
    end
  end
  if ok then
    local token = string.format('%.6f', now) .. '.' .. (i - 4)
    redis.call('HSET', KEYS[1], id, 'q:' .. token)
    out[#out + 1] = token
  else
    out[#out + 1] = false
    dup = dup + 1
  end
end
local n = #ARGV - 4
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  redis.call('HINCRBY', key, 'submitted', n)
  if dup > 0 then
    redis.call('HINCRBY', key, 'duplicate', dup)
    redis.call('HINCRBY', key, 'duplicate:seen_url', dup)
  end
end
redis.call('EXPIRE', KEYS[3], bttl)
return out
"""

# KEYS: urls, counters, batch, failures stream. ARGV: id, token, code, state, reason, now, batch_ttl,
# maxlen, event json. Returns 1 when this call moved the URL to its terminal state, else 0.
_FINISH = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v ~= 'q:' .. ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ':' .. ARGV[6])
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  redis.call('HINCRBY', key, ARGV[4], 1)
  if ARGV[5] ~= '' then redis.call('HINCRBY', key, ARGV[4] .. ':' .. ARGV[5], 1) end
end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
if ARGV[3] == 'f' or ARGV[3] == 'k' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'event', ARGV[9])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """A URL the frontier let through: queue it with this token."""

    url_id: str
    token: str


class StateStore:
    """Fleet-wide state: ``claim`` URLs at submission, ``finish`` them once, read ``counters``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "ingest",
        recrawl_ttl: int = 0,
        batch_ttl: int = 7 * 24 * 3600,
        failures_max: int = 100_000,
    ) -> None:
        if recrawl_ttl < 0:
            raise ValueError("recrawl_ttl must be >= 0")
        self.r = client
        self.prefix = prefix
        self.recrawl_ttl = recrawl_ttl
        self.batch_ttl = batch_ttl
        self.failures_max = failures_max
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> StateStore:
        return cls(redis.Redis.from_url(url, socket_timeout=30, health_check_interval=30), **kwargs)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def claim(self, url_ids: Sequence[str], *, batch: str, force: bool = False) -> list[Claim | None]:
        """Atomically claim URL ids for fetching; None for ids already seen (counted ``duplicate``)."""
        if not url_ids:
            return []
        raw = [bytes.fromhex(i) for i in url_ids]
        tokens = self._claim(
            keys=[self.key("urls"), self.key("counters"), self.key("batch", batch)],
            args=[f"{time.time():.6f}", self.recrawl_ttl, int(force), self.batch_ttl, *raw],
        )
        return [
            Claim(uid, tok.decode() if isinstance(tok, bytes) else tok) if tok else None
            for uid, tok in zip(url_ids, tokens, strict=True)
        ]

    def finish(
        self,
        url_id: str,
        token: str,
        state: str,
        reason: str = "",
        *,
        batch: str,
        url: str = "",
        detail: str = "",
    ) -> bool:
        """Move a claimed URL to its terminal state; False when it was already finished (re-delivery)."""
        event = json.dumps(
            {
                "url": url,
                "id": url_id,
                "state": state,
                "reason": reason,
                "detail": detail[:500],
                "at": time.time(),
                "batch": batch,
            }
        )
        return bool(
            self._finish(
                keys=[self.key("urls"), self.key("counters"), self.key("batch", batch), self.key("failures")],
                args=[
                    bytes.fromhex(url_id),
                    token,
                    _STATE_CODE[state],
                    state,
                    reason,
                    f"{time.time():.6f}",
                    self.batch_ttl,
                    self.failures_max,
                    event,
                ],
            )
        )

    def reject(self, n: int, reason: str, *, batch: str, urls: Iterable[str] = ()) -> None:
        """Count ``n`` submitted URLs that never got an id (invalid) as ``skipped:<reason>``."""
        if n <= 0:
            return
        pipe = self.r.pipeline(transaction=True)
        for key in (self.key("counters"), self.key("batch", batch)):
            pipe.hincrby(key, "submitted", n)
            pipe.hincrby(key, "skipped", n)
            pipe.hincrby(key, f"skipped:{reason}", n)
        pipe.expire(self.key("batch", batch), self.batch_ttl)
        for url in urls:
            event = json.dumps(
                {"url": url[:2048], "state": "skipped", "reason": reason, "at": time.time(), "batch": batch}
            )
            pipe.xadd(self.key("failures"), {"event": event}, maxlen=self.failures_max, approximate=True)
        pipe.execute()

    def url_state(self, url_id: str) -> str | None:
        """``queued``, a terminal state name, or None when the URL was never claimed."""
        v = self.r.hget(self.key("urls"), bytes.fromhex(url_id))
        if v is None:
            return None
        code = v[:1].decode()
        return "queued" if code == "q" else {c: s for s, c in _STATE_CODE.items()}[code]

    def content_owner(self, content_hash: str, url_id: str) -> str:
        """Register ``url_id`` as the owner of this text hash; return the owner (the first one wins)."""
        key = self.key("content")
        field = bytes.fromhex(content_hash[:32])
        owner = self.r.hsetnx(key, field, url_id) and url_id
        return owner or self.r.hget(key, field).decode()

    @staticmethod
    def _decode(raw: dict) -> dict[str, int]:
        return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}

    def counters(self, batch: str | None = None) -> dict[str, int]:
        """Fleet-wide counters, or one batch's."""
        return self._decode(self.r.hgetall(self.key("batch", batch) if batch else self.key("counters")))

    def failures(self, count: int = 100, reason: str | None = None) -> list[dict]:
        """Newest skipped/failed events first."""
        out = []
        for _id, fields in self.r.xrevrange(self.key("failures"), count=count if not reason else None):
            event = json.loads(fields[b"event"])
            if reason is None or event.get("reason") == reason:
                out.append(event)
            if len(out) >= count:
                break
        return out


def summarize(counters: dict[str, int]) -> dict[str, Any]:
    """Counters as a structured summary: totals, reasons per state, pending."""
    out: dict[str, Any] = {"submitted": counters.get("submitted", 0)}
    done = 0
    for state in TERMINAL_STATES:
        out[state] = counters.get(state, 0)
        done += out[state]
        reasons = {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith(state + ":")}
        out[f"{state}_reasons"] = dict(sorted(reasons.items()))
    out["pending"] = out["submitted"] - done
    return out


_RELEASE = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == 'q:' .. ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
for _, key in ipairs({KEYS[2], KEYS[3]}) do redis.call('HINCRBY', key, 'submitted', -n) end
return n
"""


def release(store: StateStore, claims: Sequence[Claim], *, batch: str) -> int:
    """Undo claims whose tasks could not be queued, so the URLs count as never submitted."""
    if not claims:
        return 0
    script = store.r.register_script(_RELEASE)
    args: list[Any] = []
    for c in claims:
        args += [bytes.fromhex(c.url_id), c.token]
    return int(script(keys=[store.key("urls"), store.key("counters"), store.key("batch", batch)], args=args))
