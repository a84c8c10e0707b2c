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
from urllib.parse import urlsplit

import redis

from ingest_core.frontier import FINISH_CLEANUP, Frontier
from ingest_core.settings import Settings

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

# KEYS: urls, counters, batch, failures stream, dead letters hash, dead letters index (zset by time), metrics
# hash, failing domains (zset), written notes (hash), the batch key prefix, then the key prefix (frontier
# state). ARGV: id, token, code, state, reason, now, batch_ttl, maxlen, event json, dead-letter json (an
# object starting with "reason", without attempts), domain, then metric field/increment pairs. Returns 1 when
# this call moved the URL to its terminal state, else 0 (re-delivery or superseded: nothing counted).
# Batches that adopted the URL (submitted it again while it was pending) count its end too.
_FINISH = (
    """
local P = KEYS[11]
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v ~= 'q:' .. ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ':' .. ARGV[6])
redis.call('HDEL', KEYS[9], ARGV[1])
local counted = {KEYS[2], KEYS[3]}
local adopters = redis.call('HGET', P .. ':adopt', ARGV[1])
if adopters then
  for b in string.gmatch(adopters, '%S+') do
    if KEYS[10] .. b ~= KEYS[3] then counted[#counted + 1] = KEYS[10] .. b end
  end
  redis.call('HDEL', P .. ':adopt', ARGV[1])
end
for _, key in ipairs(counted) do
  redis.call('HINCRBY', key, ARGV[4], 1)
  if ARGV[5] ~= '' then redis.call('HINCRBY', key, ARGV[4] .. ':' .. ARGV[5], 1) end
end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
"""
    + FINISH_CLEANUP
    + """
if ARGV[3] == 'f' or ARGV[3] == 'k' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'event', ARGV[9])
end
if ARGV[3] == 'f' then
  -- dead letter: last reason, time and attempts per URL, bounded to maxlen entries (oldest dropped)
  local old = redis.call('HGET', KEYS[5], ARGV[1])
  local attempts = 1
  if old then attempts = (tonumber(string.match(old, '^{"attempts": (%d+),')) or 0) + 1 end
  redis.call('HSET', KEYS[5], ARGV[1], '{"attempts": ' .. attempts .. ', ' .. string.sub(ARGV[10], 2))
  redis.call('ZADD', KEYS[6], ARGV[6], ARGV[1])
  local extra = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[8])
  if extra > 0 then
    for _, oid in ipairs(redis.call('ZRANGE', KEYS[6], 0, extra - 1)) do redis.call('HDEL', KEYS[5], oid) end
    redis.call('ZREMRANGEBYRANK', KEYS[6], 0, extra - 1)
  end
  if ARGV[11] ~= '' then
    redis.call('ZINCRBY', KEYS[8], 1, ARGV[11])
    -- bounded: past 2000 domains keep the 1000 failing most
    if redis.call('ZCARD', KEYS[8]) > 2000 then redis.call('ZREMRANGEBYRANK', KEYS[8], 0, 999) end
  end
elseif redis.call('HDEL', KEYS[5], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[6], ARGV[1])
end
for i = 12, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[7], ARGV[i], ARGV[i + 1]) end
return 1
"""
)

# KEYS: content hashes, near-dup sketches, near-dup bands. ARGV: id (hex), content hash (16 raw bytes),
# id (16 raw bytes), sketch (4-byte big-endian shingle count, then ascending 32-bit shingle hashes: bottom-k),
# threshold, k, then band keys. One atomic step: an exact owner of the hash, else the band candidate whose
# sketch gives the highest Jaccard (bottom-k of the union; sizes bound it first), if >= threshold, else
# register this document as canonical (hash, sketch, and every band not yet taken).
# Returns {kind, owner, similarity as a string}.
_DEDUPE = """
local owner = redis.call('HGET', KEYS[1], ARGV[2])
if owner then
  if owner == ARGV[1] then return {'new'} end
  return {'same_text', owner, '1'}
end
local function word(s, p)
  local a, b, c, d = string.byte(s, p, p + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function hashes(s)
  local out = {}
  for p = 5, #s - 3, 4 do out[#out + 1] = word(s, p) end
  return out
end
local sk, threshold, k = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if #sk >= 4 then
  local size, mine = word(sk, 1), nil
  local best, best_j, seen = false, -1, {}
  for i = 7, #ARGV do
    local cand = redis.call('HGET', KEYS[3], ARGV[i])
    if cand and not seen[cand] then
      seen[cand] = true
      if cand == ARGV[3] then return {'new'} end
      local other = redis.call('HGET', KEYS[2], cand)
      if other and #other >= 4 then
        local osize = word(other, 1)
        if math.min(size, osize) >= threshold * math.max(size, osize) then
          mine = mine or hashes(sk)
          local theirs = hashes(other)
          local x, y, both, taken = 1, 1, 0, 0
          while taken < k and (mine[x] or theirs[y]) do
            local a, b = mine[x], theirs[y]
            if b == nil or (a ~= nil and a < b) then x = x + 1
            elseif a == nil or b < a then y = y + 1
            else both = both + 1; x = x + 1; y = y + 1 end
            taken = taken + 1
          end
          local j = taken > 0 and both / taken or 1
          if j > best_j then best, best_j = cand, j end
        end
      end
    end
  end
  if best and best_j >= threshold then return {'near_duplicate', best, string.format('%.6f', best_j)} end
  redis.call('HSET', KEYS[2], ARGV[3], sk)
  for i = 7, #ARGV do redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[3]) end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
return {'new'}
"""

FETCH_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds of the fetch latency histogram (seconds)."""

PROCESS_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds of the process (extract .. store) latency histogram (seconds)."""

DOMAIN_FAILURES_KEPT = 1000
"""Domains kept in the failing-domains ranking (at least; trimmed when it doubles)."""


def observation_fields(
    *,
    fetch_seconds: float | None = None,
    process_seconds: float | None = None,
    fetched_bytes: int | None = None,
) -> list[Any]:
    """Metric hash field/increment pairs for one finished URL: histogram buckets, counts, sums, bytes."""
    out: list[Any] = []
    for name, value, bounds in (
        ("fetch_seconds", fetch_seconds, FETCH_SECONDS_BUCKETS),
        ("process_seconds", process_seconds, PROCESS_SECONDS_BUCKETS),
    ):
        if value is None:
            continue
        le = next((f"{b:g}" for b in bounds if value <= b), "+Inf")
        # one non-cumulative bucket per observation; the exporter sums them into Prometheus' cumulative form
        out += [f"{name}:bucket:{le}", 1, f"{name}:count", 1, f"{name}:sum", f"{value:.6f}"]
    if fetched_bytes is not None:
        out += ["fetched_bytes", int(fetched_bytes)]
    return out


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
        frontier: Frontier | None = None,
    ) -> None:
        if recrawl_ttl < 0:
            raise ValueError("recrawl_ttl must be >= 0")
        self.r = client
        self.frontier = frontier or Frontier(client, prefix=prefix)
        self.prefix = prefix
        self.recrawl_ttl = recrawl_ttl
        self.batch_ttl = batch_ttl
        self.failures_max = failures_max
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._dedupe = client.register_script(_DEDUPE)

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
        metrics: Sequence[Any] = (),
    ) -> bool:
        """Move a claimed URL to its terminal state; False when it was already finished (re-delivery).

        A failed URL gets a dead letter (last reason, time, attempts); any other end removes it.
        ``metrics`` are ``observation_fields(...)`` pairs, counted only when this call finishes the URL.
        """
        now = time.time()
        event = json.dumps(
            {
                "url": url,
                "id": url_id,
                "state": state,
                "reason": reason,
                "detail": detail[:500],
                "at": now,
                "batch": batch,
            }
        )
        dead = json.dumps(
            {"reason": reason, "url": url, "id": url_id, "detail": detail[:500], "at": now, "batch": batch}
        )
        return bool(
            self._finish(
                keys=[
                    self.key("urls"),
                    self.key("counters"),
                    self.key("batch", batch),
                    self.key("failures"),
                    self.key("dead"),
                    self.key("dead", "at"),
                    self.key("metrics"),
                    self.key("failing_domains"),
                    self.key("written"),
                    self.key("batch", ""),
                    self.prefix,
                ],
                args=[
                    bytes.fromhex(url_id),
                    token,
                    _STATE_CODE[state],
                    state,
                    reason,
                    f"{now:.6f}",
                    self.batch_ttl,
                    self.failures_max,
                    event,
                    dead,
                    _domain(url),
                    *metrics,
                ],
            )
        )

    def dead_letters(self, reason: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """URLs whose last end was ``failed``, newest first: url, id, reason, detail, attempts, at, batch."""
        out: list[dict[str, Any]] = []
        ids: list[bytes] = []
        for field, raw in self.r.hscan_iter(self.key("dead"), count=1000):
            entry = json.loads(raw)
            if reason is None or entry.get("reason") == reason:
                out.append(entry)
                ids.append(field)
        if ids:  # an entry outlives its failure only until the next finish; check the URL is still failed
            states = self.r.hmget(self.key("urls"), ids)
            out = [e for e, st in zip(out, states, strict=True) if st is not None and st[:1] == b"f"]
        out.sort(key=lambda e: e.get("at", 0), reverse=True)
        return out[:limit] if limit is not None else out

    def metrics(self) -> dict[str, float]:
        """Raw metric fields (histogram buckets, counts, sums, bytes) written by ``finish``."""
        return {k.decode(): float(v) for k, v in self.r.hgetall(self.key("metrics")).items()}

    def failing_domains(self, top: int = 20) -> list[tuple[str, int]]:
        """Domains with the most failed URLs, most first."""
        rows = self.r.zrevrange(self.key("failing_domains"), 0, top - 1, withscores=True)
        return [(d.decode(), int(n)) for d, n in rows]

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

    def count_duplicates(self, n: int, *, batch: str) -> None:
        """Count ``n`` submitted URLs as ``duplicate:seen_url`` (repeats within one chunk)."""
        pipe = self.r.pipeline(transaction=True)
        for key in (self.key("counters"), self.key("batch", batch)):
            for name in ("submitted", "duplicate", "duplicate:seen_url"):
                pipe.hincrby(key, name, n)
        pipe.expire(self.key("batch", batch), self.batch_ttl)
        pipe.execute()

    def url_state(self, url_id: str) -> str | None:
        """``queued``, a terminal state name, or None when the URL was never claimed."""
        v = self.r.hget(self.key("urls"), bytes.fromhex(url_id))
        if v is None:
            return None
        code = v[:1].decode()
        return "queued" if code == "q" else {c: s for s, c in _STATE_CODE.items()}[code]

    def is_pending(self, url_id: str, token: str) -> bool:
        """True while this claim is still queued: a task re-delivered after its URL ended can stop early."""
        return self.r.hget(self.key("urls"), bytes.fromhex(url_id)) == b"q:" + token.encode()

    def validators(self, url_id: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) kept from the last time this URL was stored, for a conditional GET."""
        raw = self.r.hget(self.key("validators"), bytes.fromhex(url_id))
        if not raw:
            return None, None
        data = json.loads(raw)
        return data.get("e"), data.get("m")

    def set_validators(self, url_id: str, etag: str | None, last_modified: str | None) -> None:
        """Keep a stored page's validators (nothing is kept when it sent none)."""
        if etag or last_modified:
            value = json.dumps({"e": etag, "m": last_modified}, separators=(",", ":"))
            self.r.hset(self.key("validators"), bytes.fromhex(url_id), value)

    def content_owner(self, content_hash: str, url_id: str) -> str:
        """Register ``url_id`` as the owner of this text hash; return the owner (the first one wins)."""
        key = self.key("content")
        field = bytes.fromhex(content_hash[:32])
        owner = self.r.hsetnx(key, field, url_id) and url_id
        return owner or self.r.hget(key, field).decode()

    def dedupe(
        self, url_id: str, content_hash: str, sketch: bytes, bands: list[bytes], threshold: float, k: int
    ) -> tuple[str, str | None, float]:
        """Exact then near-duplicate lookup, registering ``url_id`` as canonical when neither: atomic.

        Returns ``(kind, owner, similarity)``: ``("new", None, 0.0)``, ``("same_text", owner, 1.0)`` or
        ``("near_duplicate", owner, Jaccard from the bottom-k sketches)``. Shares the ``content`` hash with
        ``content_owner``; near-duplicate state is ``<prefix>:nd:sketch`` (id -> sketch) and
        ``<prefix>:nd:bands`` (band -> first id), kept for canonical documents only.
        """
        out = self._dedupe(
            keys=[self.key("content"), self.key("nd", "sketch"), self.key("nd", "bands")],
            args=[
                url_id,
                bytes.fromhex(content_hash[:32]),
                bytes.fromhex(url_id),
                sketch,
                repr(float(threshold)),
                k,
                *bands,
            ],
        )
        kind = out[0].decode()
        if kind == "new":
            return kind, None, 0.0
        owner = out[1].decode() if kind == "same_text" else out[1].hex()
        return kind, owner, float(out[2])

    @staticmethod
    def _decode(raw: dict) -> dict[str, int]:
        return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}

    def counters(self, batch: str | None = None) -> dict[str, int]:
        """Fleet-wide counters, or one batch's."""
        return self._decode(self.r.hgetall(self.key("batch", batch) if batch else self.key("counters")))

    def failures(self, count: int = 100, reason: str | None = None, batch: str | None = None) -> list[dict]:
        """Newest skipped/failed events first (of one ``reason`` and/or ``batch`` when given)."""
        out = []
        filtered = reason is not None or batch is not None
        for _id, fields in self.r.xrevrange(self.key("failures"), count=None if filtered else count):
            event = json.loads(fields[b"event"])
            if (reason is None or event.get("reason") == reason) and (
                batch is None or event.get("batch") == batch
            ):
                out.append(event)
            if len(out) >= count:
                break
        return out

    def cancel(self, batch: str | None = None) -> int:
        """End the pending URLs of ``batch`` (None: all) as ``skipped:cancelled``; returns how many.

        Each goes through ``finish`` (the same accounting as any end); a task still queued for one of them
        then finds its claim gone and does nothing."""
        n = 0
        for uid in self.frontier.pending_ids(batch):
            raw = self.r.hget(self.key("urls"), bytes.fromhex(uid))
            job_raw = self.r.hget(self.key("jobs"), bytes.fromhex(uid))
            if not raw or raw[:2] != b"q:" or not job_raw:
                continue
            job = json.loads(job_raw)
            done = self.finish(
                uid,
                raw[2:].decode(),
                "skipped",
                "cancelled",
                batch=job["batch"],
                url=job["url"],
                detail="ingest cancel",
            )
            n += int(done)
        return n

    # -- where a claim's record was written (exactly-once visible output) -------------------------------
    # ``<prefix>:written`` maps a URL id to "<claim token> <location>", set just before the record's bytes
    # go out; a task delivered again for the same claim reads it and, finding its record whole there,
    # finishes without writing it twice. Removed once the URL is terminal (``forget_written``).

    def mark_written(self, url_id: str, token: str, location: str) -> None:
        """Note where this claim's record is about to be appended (a store ``Location`` as text)."""
        self.r.hset(self.key("written"), bytes.fromhex(url_id), f"{token} {location}")

    def written_at(self, url_id: str, token: str) -> str | None:
        """The location noted for this claim, or None (never noted, or noted by another claim)."""
        raw = self.r.hget(self.key("written"), bytes.fromhex(url_id))
        if raw is None:
            return None
        noted, _, location = raw.decode().partition(" ")
        return location if noted == token and location else None

    def forget_written(self, url_id: str) -> None:
        """Drop the note of a URL that reached its terminal state."""
        self.r.hdel(self.key("written"), bytes.fromhex(url_id))


def _domain(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


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


def state_from_settings(s: Settings) -> StateStore:
    """The shared-state store (and its frontier) named by settings: the one place they are read for it."""
    if not s.state_url:
        raise ValueError("no Redis for shared state: set INGEST_REDIS_URL or a redis:// INGEST_BROKER_URL")
    client = redis.Redis.from_url(s.state_url, socket_timeout=30, health_check_interval=30)
    frontier = Frontier(
        client,
        prefix=s.key_prefix,
        host_interval=s.host_interval,
        fetch_lease=s.fetch_lease,
        process_lease=s.process_lease,
        page_ttl=s.page_ttl,
    )
    return StateStore(
        client,
        prefix=s.key_prefix,
        recrawl_ttl=s.recrawl_ttl,
        batch_ttl=s.batch_ttl,
        failures_max=s.failures_max,
        frontier=frontier,
    )
