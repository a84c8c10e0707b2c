"""The frontier: where every claimed URL waits, in Redis, until its host is ready for it.

Submitting claims URLs into per-host queues (:meth:`Frontier.enqueue`: the claim and the enqueue are one
Lua call per chunk); nothing is sent to the broker at submit time. A dispatcher in each fetch worker
(``worker.dispatch``) calls :meth:`Frontier.dispatch`, which atomically takes the hosts whose next allowed
fetch time has come, pops one live URL from each, books the host's next time (the interval, or the host's
Crawl-delay) and leases the URL to the fetch stage; only then is an ``ingest.fetch`` task published. So no
task waits for politeness, the ``fetch`` queue stays about as long as the fleet's fetch concurrency, and
any number of dispatchers can run at once.

Pages fetched elsewhere (a WARC) are claimed by the same rules and enter at the process stage with
their page already kept (:meth:`Frontier.enqueue_fetched`).

Keys (``<p>`` is the key prefix; ids are 16 raw bytes)::

    <p>:urls            hash  id -> q:<token> while pending, <s|d|k|f>:<time> once terminal (StateStore)
    <p>:jobs            hash  id -> job JSON (url, id, batch, source, hints, host, attempts) while pending
    <p>:stage           hash  id -> w (waiting) | r (retry backoff) | f:<gen>[:s] (fetch) | p:<gen>[:s]
    <p>:fq:<host>       list  ids waiting for host, oldest first (ended ids are skipped lazily)
    <p>:hosts           zset  host -> ms when it may be fetched next (hosts with a queue)
    <p>:hostn           zset  host -> URLs waiting for it (the busiest hosts, for stats)
    <p>:hn:<host>       str   the host's next allowed time in ms (kept while its queue is empty)
    <p>:hi:<host>       str   the host's own interval in ms (robots.txt Crawl-delay), with a TTL
    <p>:retry           zset  id -> ms when a transient failure may be fetched again
    <p>:lease:f         zset  id -> ms when a fetch lease runs out (dispatched, fetch not done)
    <p>:lease:p         zset  id -> ms when a process lease runs out (page fetched, not yet terminal)
    <p>:page:<hex id>   str   the fetched page for the process task (a claim check, with a TTL)
    <p>:adopt           hash  id -> batches that re-submitted a pending URL (they count its end too)
    <p>:fstat           hash  waiting (URLs in host queues), gen (dispatch generations), leases_expired
    <p>:fleet           hash  worker -> "<fetch concurrency> <expiry ms>" (the fleet's fetch capacity)
    <p>:paused          str   set while dispatch pauses for backpressure (the value says why)
    <p>:wake            list  pushed by enqueue so that an idle dispatcher starts at once

A lease that runs out means its task was lost (a worker killed, a broker restart): the URL is dispatched
again with a new generation, and a late copy of the old task finds its generation gone and does nothing.
A lease whose task never started is only taken back while the broker queue of its stage is empty, so a
task merely waiting behind a backlog is never sent twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

# Lua helpers shared by every script below; KEYS[1] is the key prefix.
_LIB = """
local P = KEYS[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function host_ready(host, at)
  local nxt = tonumber(redis.call('GET', P .. ':hn:' .. host) or '0')
  redis.call('ZADD', P .. ':hosts', 'NX', math.max(at, nxt), host)
end
local function push(id, host, front)
  if front then redis.call('LPUSH', P .. ':fq:' .. host, id)
  else redis.call('RPUSH', P .. ':fq:' .. host, id) end
  redis.call('HSET', P .. ':stage', id, 'w')
  redis.call('ZINCRBY', P .. ':hostn', 1, host)
  redis.call('HINCRBY', P .. ':fstat', 'waiting', 1)
end
local function unwait(host)
  if tonumber(redis.call('ZINCRBY', P .. ':hostn', -1, host)) <= 0 then
    redis.call('ZREM', P .. ':hostn', host)
  end
  redis.call('HINCRBY', P .. ':fstat', 'waiting', -1)
end
local function job_of(id)
  local raw = redis.call('HGET', P .. ':jobs', id)
  if not raw then return nil end
  return cjson.decode(raw)
end
local function holds(id, token, gen)
  -- this task's claim is still pending and its generation is the current one
  if redis.call('HGET', P .. ':urls', id) ~= 'q:' .. token then return nil end
  local stage = redis.call('HGET', P .. ':stage', id) or ''
  local st, g = string.match(stage, '^([fp]):(%d+)')
  if g ~= gen then return nil end
  return st
end
local function adopt(id, batch)
  -- a pending URL submitted again: another batch adopts it (it counts the URL and its end). Returns
  -- whether this batch already waits for it (its own job, or adopted before), and the pending job.
  local old = redis.call('HGET', P .. ':adopt', id)
  local job0 = job_of(id)
  local listed = old and string.find(' ' .. old .. ' ', ' ' .. batch .. ' ', 1, true)
  local mine = job0 and (job0['batch'] == batch or listed)
  if job0 and not mine then
    redis.call('HSET', P .. ':adopt', id, old and (old .. ' ' .. batch) or batch)
  end
  return mine, job0
end
local function clear(id)
  -- every trace of a pending URL in the frontier; a waiting one leaves its host's count
  local stage = redis.call('HGET', P .. ':stage', id)
  if stage == 'w' then
    local job = job_of(id)
    if job then unwait(job['host']) end
  end
  local job = job_of(id)
  if job then redis.call('DEL', P .. ':page:' .. job['id']) end
  redis.call('HDEL', P .. ':jobs', id)
  redis.call('HDEL', P .. ':stage', id)
  redis.call('ZREM', P .. ':lease:f', id)
  redis.call('ZREM', P .. ':lease:p', id)
  redis.call('ZREM', P .. ':retry', id)
end
"""

# KEYS: prefix, counters, batch. ARGV: now (s), recrawl ttl, force, batch ttl, batch, mode, then triples
# of (raw id, host, job JSON without token). Mode ``submit``: new URLs, failed ones and (with force or past
# the recrawl TTL) ended ones are claimed; a URL still pending is adopted by this batch ('p'), or with force
# queued again under a new token ('p<token>'); the rest are duplicates (false). Mode ``retry``: only failed
# URLs are claimed, and they leave ``failed`` at once (fleet-wide ``submitted`` unchanged).
_ENQUEUE = (
    _LIB
    + """
local now, ttl, force = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local bttl, batch = tonumber(ARGV[4]), ARGV[5]
local retry = ARGV[6] == 'retry'
local now_m = now_ms()
local out, dup, new, adopted = {}, 0, 0, 0
local n = 0
for i = 7, #ARGV, 3 do
  n = n + 1
  local id, host, job = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local v = redis.call('HGET', P .. ':urls', id)
  local ok = false
  if not v then ok = not retry
  else
    local st = string.sub(v, 1, 1)
    if st == 'f' then ok = true
    elseif retry then ok = false
    elseif st == 'q' then ok = 'pending'
    elseif force then ok = true
    elseif ttl > 0 and now - tonumber(string.sub(v, 3)) >= ttl then ok = true end
  end
  if ok == true then
    local token = string.format('%.6f', now) .. '.' .. n
    if retry then
      -- a retried URL leaves failed now; it is counted again when it ends
      redis.call('HINCRBY', KEYS[2], 'failed', -1)
      redis.call('HINCRBY', KEYS[2], 'submitted', -1)
      local entry = redis.call('HGET', P .. ':dead', id)
      local reason = entry and string.match(entry, '"reason": "([^"]*)"')
      if reason and reason ~= '' then redis.call('HINCRBY', KEYS[2], 'failed:' .. reason, -1) end
    end
    redis.call('HSET', P .. ':urls', id, 'q:' .. token)
    redis.call('HSET', P .. ':jobs', id, job)
    push(id, host, false)
    host_ready(host, now_m)
    out[#out + 1] = token
    new = new + 1
  elseif ok == 'pending' then
    local mine, job0 = adopt(id, batch)
    if mine then
      -- this batch already waits for it (a repeat in a later chunk): a duplicate, or it would be counted
      -- submitted twice and ended once, and the batch would never finish
      out[#out + 1] = false
      dup = dup + 1
    elseif force then
      -- queued again with a new token: whatever task holds the old one ends without counting
      clear(id)
      local token = string.format('%.6f', now) .. '.' .. n
      redis.call('HSET', P .. ':urls', id, 'q:' .. token)
      if job0 then
        job0['attempts'] = 0
        redis.call('HSET', P .. ':jobs', id, cjson.encode(job0))
      else
        redis.call('HSET', P .. ':jobs', id, job)
      end
      push(id, host, false)
      host_ready(host, now_m)
      out[#out + 1] = 'p' .. token
    else
      out[#out + 1] = 'p'
    end
    if not mine then adopted = adopted + 1 end
  else
    out[#out + 1] = false
    if not retry then dup = dup + 1 end
  end
end
if retry then n = new end
redis.call('HINCRBY', KEYS[2], 'submitted', new + dup)
if dup > 0 then
  redis.call('HINCRBY', KEYS[2], 'duplicate', dup)
  redis.call('HINCRBY', KEYS[2], 'duplicate:seen_url', dup)
end
redis.call('HINCRBY', KEYS[3], 'submitted', n)
if dup > 0 then
  redis.call('HINCRBY', KEYS[3], 'duplicate', dup)
  redis.call('HINCRBY', KEYS[3], 'duplicate:seen_url', dup)
end
if adopted > 0 then redis.call('HINCRBY', KEYS[3], 'adopted', adopted) end
redis.call('EXPIRE', KEYS[3], bttl)
if new + adopted > 0 then
  redis.call('LPUSH', P .. ':wake', '1')
  redis.call('LTRIM', P .. ':wake', 0, 0)
end
return out
"""
)

# KEYS: prefix, counters, batch. ARGV: now (s), recrawl ttl, force, batch ttl, batch, page ttl s, process
# lease ms, then quintuples of (raw id, host, job JSON without token, packed page, hex id). Pages fetched
# elsewhere (a WARC): claimed by the rules of _ENQUEUE (submit mode), and each claimed URL skips the host
# queue: its page goes under its claim-check key and the URL is leased to the process stage at once.
# Replies per page: {token, gen} when claimed, 'p' when adopted (pending elsewhere: that fetch counts for
# this batch too, this page is dropped), false when a duplicate.
_ENQUEUE_FETCHED = (
    _LIB
    + """
local now, ttl, force = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local bttl, batch = tonumber(ARGV[4]), ARGV[5]
local pttl, plea = tonumber(ARGV[6]), tonumber(ARGV[7])
local now_m = now_ms()
local out, dup, new, adopted = {}, 0, 0, 0
local n = 0
local function claim(id, job, page, hex)
  local token = string.format('%.6f', now) .. '.' .. n
  local gen = tostring(redis.call('HINCRBY', P .. ':fstat', 'gen', 1))
  redis.call('HSET', P .. ':urls', id, 'q:' .. token)
  redis.call('HSET', P .. ':jobs', id, job)
  redis.call('SET', P .. ':page:' .. hex, page, 'EX', pttl)
  redis.call('HSET', P .. ':stage', id, 'p:' .. gen)
  redis.call('ZADD', P .. ':lease:p', now_m + plea, id)
  return {token, gen}
end
for i = 8, #ARGV, 5 do
  n = n + 1
  local id, job, page, hex = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local v = redis.call('HGET', P .. ':urls', id)
  local ok = false
  if not v then ok = true
  else
    local st = string.sub(v, 1, 1)
    if st == 'f' then ok = true
    elseif st == 'q' then ok = 'pending'
    elseif force then ok = true
    elseif ttl > 0 and now - tonumber(string.sub(v, 3)) >= ttl then ok = true end
  end
  if ok == true then
    out[#out + 1] = claim(id, job, page, hex)
    new = new + 1
  elseif ok == 'pending' then
    local mine, job0 = adopt(id, batch)
    if mine then
      out[#out + 1] = false
      dup = dup + 1
    elseif force then
      clear(id)
      out[#out + 1] = claim(id, job, page, hex)
    else
      out[#out + 1] = 'p'
    end
    if not mine then adopted = adopted + 1 end
  else
    out[#out + 1] = false
    dup = dup + 1
  end
end
redis.call('HINCRBY', KEYS[2], 'submitted', new + dup)
redis.call('HINCRBY', KEYS[3], 'submitted', n)
if dup > 0 then
  for _, k in ipairs({KEYS[2], KEYS[3]}) do
    redis.call('HINCRBY', k, 'duplicate', dup)
    redis.call('HINCRBY', k, 'duplicate:seen_url', dup)
  end
end
if adopted > 0 then redis.call('HINCRBY', KEYS[3], 'adopted', adopted) end
redis.call('EXPIRE', KEYS[3], bttl)
return out
"""
)

# KEYS: prefix. ARGV: budget, default interval ms, lease ms, fleet capacity.
# Returns {next ready ms or -1, then id, token, job, gen for each URL dispatched}.
_DISPATCH = (
    _LIB
    + """
local now = now_ms()
local budget, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local lease, capacity = tonumber(ARGV[3]), tonumber(ARGV[4])
-- transient failures whose backoff is over go back to the front of their host's queue
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':retry', '-inf', now, 'LIMIT', 0, 500)) do
  redis.call('ZREM', P .. ':retry', id)
  local v = redis.call('HGET', P .. ':urls', id)
  local job = job_of(id)
  if v and string.sub(v, 1, 2) == 'q:' and job and redis.call('HGET', P .. ':stage', id) == 'r' then
    push(id, job['host'], true)
    host_ready(job['host'], now)
  end
end
budget = math.min(budget, capacity - redis.call('ZCARD', P .. ':lease:f'))
local out = {-1}
if budget > 0 then
  local ready = redis.call('ZRANGEBYSCORE', P .. ':hosts', '-inf', now, 'WITHSCORES', 'LIMIT', 0, budget)
  for h = 1, #ready, 2 do
    local host, slot = ready[h], tonumber(ready[h + 1])
    local qk = P .. ':fq:' .. host
    for _ = 1, 200 do
      local id = redis.call('LPOP', qk)
      if not id then break end
      local v = redis.call('HGET', P .. ':urls', id)
      if v and string.sub(v, 1, 2) == 'q:' and redis.call('HGET', P .. ':stage', id) == 'w' then
        unwait(host)
        local gen = tostring(redis.call('HINCRBY', P .. ':fstat', 'gen', 1))
        redis.call('HSET', P .. ':stage', id, 'f:' .. gen)
        redis.call('ZADD', P .. ':lease:f', now + lease, id)
        local own = tonumber(redis.call('GET', P .. ':hi:' .. host) or '0')
        local step = math.max(interval, own)
        if step > 0 then
          -- the next slot follows this one's schedule, not this dispatch's lateness, so a busy host gets
          -- one request per interval on average; after an idle spell it counts from now
          local nxt = (now - slot < step) and (slot + step) or (now + step)
          redis.call('SET', P .. ':hn:' .. host, nxt, 'PX', nxt - now + 1000)
        end
        out[#out + 1] = id
        out[#out + 1] = string.sub(v, 3)
        out[#out + 1] = redis.call('HGET', P .. ':jobs', id)
        out[#out + 1] = gen
        break
      end
    end
    if redis.call('LLEN', qk) > 0 then
      local nxt = tonumber(redis.call('GET', P .. ':hn:' .. host) or '0')
      redis.call('ZADD', P .. ':hosts', math.max(nxt, now), host)
    else
      redis.call('ZREM', P .. ':hosts', host)
    end
  end
end
local first = redis.call('ZRANGE', P .. ':hosts', 0, 0, 'WITHSCORES')
if first[2] then out[1] = tonumber(first[2]) - now end
return out
"""
)

# KEYS: prefix. ARGV: id, token, gen, lease ms. 1 when this task holds the URL now (its lease is marked
# started and extended), else 0: superseded by a newer dispatch, cancelled, ended, or another copy of the
# same message already runs this stage (a broker can deliver one message twice: kombu restores unacked
# messages when a connection drops, while the first copy still runs). A copy whose first run died waits
# for that run's lease to run out; the sweeper then dispatches it again under a new generation.
_START = (
    _LIB
    + """
local st = holds(ARGV[1], ARGV[2], ARGV[3])
if not st then return 0 end
local now = now_ms()
if string.sub(redis.call('HGET', P .. ':stage', ARGV[1]), -2) == ':s' then
  local until_ = tonumber(redis.call('ZSCORE', P .. ':lease:' .. st, ARGV[1]) or '0')
  if until_ > now then return 0 end
end
redis.call('HSET', P .. ':stage', ARGV[1], st .. ':' .. ARGV[3] .. ':s')
redis.call('ZADD', P .. ':lease:' .. st, now + tonumber(ARGV[4]), ARGV[1])
return 1
"""
)

# KEYS: prefix. ARGV: id, token, gen, lease ms. A running task's heartbeat: extends its started lease.
_RENEW = (
    _LIB
    + """
local st = holds(ARGV[1], ARGV[2], ARGV[3])
if not st or string.sub(redis.call('HGET', P .. ':stage', ARGV[1]), -2) ~= ':s' then return 0 end
redis.call('ZADD', P .. ':lease:' .. st, 'XX', now_ms() + tonumber(ARGV[4]), ARGV[1])
return 1
"""
)

# KEYS: prefix. ARGV: id, token, gen, page bytes, page ttl s, process lease ms, hex id.
# The fetch is done: the page goes under its claim-check key and the URL is leased to the process stage.
_HANDOFF = (
    _LIB
    + """
if holds(ARGV[1], ARGV[2], ARGV[3]) ~= 'f' then return 0 end
redis.call('SET', P .. ':page:' .. ARGV[7], ARGV[4], 'EX', tonumber(ARGV[5]))
redis.call('ZREM', P .. ':lease:f', ARGV[1])
redis.call('HSET', P .. ':stage', ARGV[1], 'p:' .. ARGV[3])
redis.call('ZADD', P .. ':lease:p', now_ms() + tonumber(ARGV[6]), ARGV[1])
return 1
"""
)

# KEYS: prefix. ARGV: id, token, gen, delay ms (-1: back to the front of the host queue now), attempts.
_RETRY = (
    _LIB
    + """
if not holds(ARGV[1], ARGV[2], ARGV[3]) then return 0 end
local job = job_of(ARGV[1])
if not job then return 0 end
job['attempts'] = tonumber(ARGV[5])
redis.call('HSET', P .. ':jobs', ARGV[1], cjson.encode(job))
redis.call('DEL', P .. ':page:' .. job['id'])
redis.call('ZREM', P .. ':lease:f', ARGV[1])
redis.call('ZREM', P .. ':lease:p', ARGV[1])
local delay = tonumber(ARGV[4])
if delay < 0 then
  push(ARGV[1], job['host'], true)
  host_ready(job['host'], now_ms())
else
  redis.call('HSET', P .. ':stage', ARGV[1], 'r')
  redis.call('ZADD', P .. ':retry', now_ms() + delay, ARGV[1])
end
return 1
"""
)

# KEYS: prefix. ARGV: stage (f|p), its broker queue is empty (1|0), limit, process lease ms.
# Leases that ran out. A fetch goes back to the front of its host's queue. A process lease whose page is
# still kept gets a new generation (returned, for the caller to publish again); without its page the URL
# is fetched again. Returns {id, token, job, gen, ...} of process tasks to publish.
_EXPIRE = (
    _LIB
    + """
local st, empty, limit, please = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local lk = P .. ':lease:' .. st
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'LIMIT', 0, limit)) do
  local v = redis.call('HGET', P .. ':urls', id)
  local stage = redis.call('HGET', P .. ':stage', id) or ''
  local job = job_of(id)
  if not v or string.sub(v, 1, 2) ~= 'q:' or not job or string.sub(stage, 1, 1) ~= st then
    redis.call('ZREM', lk, id)
  elseif string.sub(stage, -2) ~= ':s' and not empty then
    redis.call('ZADD', lk, now + 5000, id)  -- may still wait in its queue: look again later
  else
    redis.call('ZREM', lk, id)
    redis.call('HINCRBY', P .. ':fstat', 'leases_expired', 1)
    if st == 'p' and redis.call('EXISTS', P .. ':page:' .. job['id']) == 1 then
      local gen = tostring(redis.call('HINCRBY', P .. ':fstat', 'gen', 1))
      redis.call('HSET', P .. ':stage', id, 'p:' .. gen)
      redis.call('ZADD', lk, now + please, id)
      out[#out + 1] = id
      out[#out + 1] = string.sub(v, 3)
      out[#out + 1] = redis.call('HGET', P .. ':jobs', id)
      out[#out + 1] = gen
    else
      push(id, job['host'], true)
      host_ready(job['host'], now)
    end
  end
end
return out
"""
)

# KEYS: prefix. ARGV: host, interval ms, ttl s. A host's own interval (Crawl-delay), never shorter than
# the default; its next slot moves out to match at once.
_HOST_INTERVAL = (
    _LIB
    + """
local host, ms = ARGV[1], tonumber(ARGV[2])
redis.call('SET', P .. ':hi:' .. host, ms, 'EX', tonumber(ARGV[3]))
local now = now_ms()
local nxt = tonumber(redis.call('GET', P .. ':hn:' .. host) or '0')
if nxt < now + ms then
  redis.call('SET', P .. ':hn:' .. host, now + ms, 'PX', ms + 1000)
  redis.call('ZADD', P .. ':hosts', 'XX', 'GT', now + ms, host)
end
return 1
"""
)

# Lua for StateStore's finish script: remove a URL's frontier state (KEYS[11] is the prefix there).
FINISH_CLEANUP = """
local id = ARGV[1]
local raw = redis.call('HGET', P .. ':jobs', id)
if raw then
  local job = cjson.decode(raw)
  if redis.call('HGET', P .. ':stage', id) == 'w' then
    if tonumber(redis.call('ZINCRBY', P .. ':hostn', -1, job['host'])) <= 0 then
      redis.call('ZREM', P .. ':hostn', job['host'])
    end
    redis.call('HINCRBY', P .. ':fstat', 'waiting', -1)
  end
  redis.call('DEL', P .. ':page:' .. job['id'])
end
redis.call('HDEL', P .. ':jobs', id)
redis.call('HDEL', P .. ':stage', id)
redis.call('ZREM', P .. ':lease:f', id)
redis.call('ZREM', P .. ':lease:p', id)
redis.call('ZREM', P .. ':retry', id)
"""


@dataclass(slots=True)
class Dispatched:
    """A URL leased to a stage: publish its task with these arguments."""

    job: dict[str, Any]
    """The job (url, id, token, batch, source, hints, host, attempts, gen): the task's argument."""


@dataclass
class EnqueueResult:
    """What ``enqueue`` did with one chunk."""

    accepted: list[str] = field(default_factory=list)
    """Ids newly claimed and queued."""
    adopted: list[str] = field(default_factory=list)
    """Ids still pending from an earlier submission, now counted by this batch too."""
    duplicates: int = 0
    """Ids already seen (stored, duplicate or skipped before)."""


class Frontier:
    """Per-host queues, the ready-host schedule and stage leases in Redis; every transition is atomic."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "ingest",
        host_interval: float = 1.0,
        fetch_lease: float = 120.0,
        process_lease: float = 600.0,
        page_ttl: int = 24 * 3600,
    ) -> None:
        if host_interval < 0:
            raise ValueError("host_interval must be >= 0")
        if fetch_lease <= 0 or process_lease <= 0:
            raise ValueError("leases must be > 0")
        self.r = client
        self.prefix = prefix
        self.host_interval = host_interval
        self.fetch_lease = fetch_lease
        self.process_lease = process_lease
        self.page_ttl = page_ttl
        self._enqueue = client.register_script(_ENQUEUE)
        self._enqueue_fetched = client.register_script(_ENQUEUE_FETCHED)
        self._dispatch = client.register_script(_DISPATCH)
        self._start = client.register_script(_START)
        self._handoff = client.register_script(_HANDOFF)
        self._renew = client.register_script(_RENEW)
        self._retry = client.register_script(_RETRY)
        self._expire = client.register_script(_EXPIRE)
        self._host_interval = client.register_script(_HOST_INTERVAL)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- submit ------------------------------------------------------------------------------------------

    def enqueue(
        self,
        jobs: Sequence[dict[str, Any]],
        *,
        batch: str,
        recrawl_ttl: int = 0,
        force: bool = False,
        batch_ttl: int = 7 * 24 * 3600,
        retry_failed: bool = False,
    ) -> EnqueueResult:
        """Claim and queue jobs (dicts with url, id, host, source, hints) in one round trip.

        Counts ``submitted`` (and ``duplicate:seen_url``) fleet-wide and in ``batch``; a URL still pending
        from another batch is adopted: this batch counts it as submitted and counts its end.
        ``retry_failed``: only failed URLs are queued again (``ingest retry-failed``).
        """
        out = EnqueueResult()
        if not jobs:
            return out
        mode = "retry" if retry_failed else "submit"
        args: list[Any] = [f"{time.time():.6f}", recrawl_ttl, int(force), batch_ttl, batch, mode]
        for job in jobs:
            body = {k: job.get(k) for k in ("url", "id", "host", "source", "hints")}
            body["batch"], body["attempts"] = batch, 0
            args += [bytes.fromhex(job["id"]), job["host"], json.dumps(body, separators=(",", ":"))]
        replies = self._enqueue(keys=[self.prefix, self.key("counters"), self.key("batch", batch)], args=args)
        for job, reply in zip(jobs, replies, strict=True):
            if not reply:
                out.duplicates += 1
            elif reply[:1] == b"p":
                out.adopted.append(job["id"])
            else:
                out.accepted.append(job["id"])
        return out

    def enqueue_fetched(
        self,
        jobs: Sequence[dict[str, Any]],
        pages: Sequence[bytes],
        *,
        batch: str,
        recrawl_ttl: int = 0,
        force: bool = False,
        batch_ttl: int = 7 * 24 * 3600,
    ) -> tuple[EnqueueResult, list[dict[str, Any]]]:
        """Claim jobs whose pages were fetched elsewhere (a WARC) straight into the process stage.

        The claim and its counting are those of :meth:`enqueue`; each claimed URL's packed page (the format
        of ``worker.runner.pack_page``) goes under its claim-check key and the URL is leased to the process
        stage. Returns what was done and the jobs (with token and gen) to publish as ``ingest.process``.
        """
        out: EnqueueResult = EnqueueResult()
        if not jobs:
            return out, []
        args: list[Any] = [
            f"{time.time():.6f}",
            recrawl_ttl,
            int(force),
            batch_ttl,
            batch,
            self.page_ttl,
            round(self.process_lease * 1000),
        ]
        bodies = []
        for job, page in zip(jobs, pages, strict=True):
            body = {k: job.get(k) for k in ("url", "id", "host", "source", "hints")}
            body["batch"], body["attempts"] = batch, 0
            bodies.append(body)
            raw = json.dumps(body, separators=(",", ":"))
            args += [bytes.fromhex(job["id"]), job["host"], raw, page, job["id"]]
        replies = self._enqueue_fetched(
            keys=[self.prefix, self.key("counters"), self.key("batch", batch)], args=args
        )
        publish = []
        for job, body, reply in zip(jobs, bodies, replies, strict=True):
            if not reply:
                out.duplicates += 1
            elif isinstance(reply, bytes | str):
                out.adopted.append(job["id"])
            else:
                out.accepted.append(job["id"])
                token, gen = (x.decode() if isinstance(x, bytes) else str(x) for x in reply)
                publish.append({**body, "token": token, "gen": gen})
        return out, publish

    # -- dispatch ----------------------------------------------------------------------------------------

    def dispatch(self, budget: int, capacity: int) -> tuple[list[dict[str, Any]], float | None]:
        """Lease up to ``budget`` URLs of ready hosts (one per host), keeping at most ``capacity`` fetch
        leases in the fleet. Returns the jobs to publish and the seconds until the next host is ready
        (None when no host has a queue)."""
        reply = self._dispatch(
            keys=[self.prefix],
            args=[max(0, budget), round(self.host_interval * 1000), round(self.fetch_lease * 1000), capacity],
        )
        nxt = int(reply[0])
        return _jobs(reply[1:]), (None if nxt == -1 else max(0.0, nxt / 1000.0))

    def start(self, job: dict[str, Any], lease: float) -> bool:
        """A task begins its stage: True when it still holds the URL (its lease is extended)."""
        return bool(
            self._start(
                keys=[self.prefix],
                args=[*_held(job), round(lease * 1000)],
            )
        )

    def renew(self, job: dict[str, Any], lease: float) -> bool:
        """A running task's heartbeat: its lease now runs ``lease`` seconds from now; False when it no
        longer holds the URL."""
        return bool(
            self._renew(
                keys=[self.prefix],
                args=[*_held(job), round(lease * 1000)],
            )
        )

    def handoff(self, job: dict[str, Any], page: bytes) -> bool:
        """Keep the fetched page for the process stage and lease the URL to it; False when superseded."""
        return bool(
            self._handoff(
                keys=[self.prefix],
                args=[
                    *_held(job),
                    page,
                    self.page_ttl,
                    round(self.process_lease * 1000),
                    job["id"],
                ],
            )
        )

    def page(self, url_id: str) -> bytes | None:
        """The page a fetch task kept for ``url_id`` (None when it expired or the URL ended)."""
        return self.r.get(self.key("page", url_id))

    def retry_later(self, job: dict[str, Any], delay: float | None, attempts: int) -> bool:
        """Back to the frontier after a transient fault: due again in ``delay`` seconds (None: at once, at
        the front of its host's queue). False when the task no longer holds the URL."""
        return bool(
            self._retry(
                keys=[self.prefix],
                args=[
                    *_held(job),
                    -1 if delay is None else round(delay * 1000),
                    attempts,
                ],
            )
        )

    def expire(self, stage: str, *, queue_empty: bool, limit: int = 1000) -> list[dict[str, Any]]:
        """Take back leases of ``stage`` (``f`` or ``p``) that ran out; returns process jobs to publish."""
        reply = self._expire(
            keys=[self.prefix],
            args=[stage, int(queue_empty), limit, round(self.process_lease * 1000)],
        )
        return _jobs(reply)

    def set_host_interval(self, host: str, seconds: float, ttl: float) -> None:
        """A host asks for more time between requests (robots.txt Crawl-delay)."""
        if seconds > self.host_interval:
            self._host_interval(keys=[self.prefix], args=[host, round(seconds * 1000), max(1, int(ttl))])

    # -- fleet capacity and backpressure -----------------------------------------------------------------

    def register(self, worker: str, concurrency: int, ttl: float = 30.0) -> None:
        """A fetch worker's capacity, valid for ``ttl`` seconds (re-registered by its dispatcher)."""
        expiry = int((time.time() + ttl) * 1000)
        self.r.hset(self.key("fleet"), worker, f"{concurrency} {expiry}")

    def unregister(self, worker: str) -> None:
        self.r.hdel(self.key("fleet"), worker)

    def capacity(self) -> int:
        """Fetch concurrency of the live fetch workers (expired entries are dropped)."""
        now, total, dead = time.time() * 1000, 0, []
        for name, raw in self.r.hgetall(self.key("fleet")).items():
            n, _, expiry = raw.decode().partition(" ")
            if float(expiry) < now:
                dead.append(name)
            else:
                total += int(n)
        if dead:
            self.r.hdel(self.key("fleet"), *dead)
        return total

    def set_paused(self, reason: str | None, ttl: float = 10.0) -> None:
        if reason:
            self.r.set(self.key("paused"), reason, px=int(ttl * 1000))
        else:
            self.r.delete(self.key("paused"))

    def paused(self) -> str | None:
        raw = self.r.get(self.key("paused"))
        return raw.decode() if raw else None

    def wait_for_work(self, timeout: float) -> None:
        """Block until a submit wakes the dispatchers, or ``timeout`` seconds (at least 10 ms)."""
        self.r.blpop([self.key("wake")], timeout=max(0.01, timeout))

    # -- visibility --------------------------------------------------------------------------------------

    def stats(self, top: int = 5) -> dict[str, Any]:
        """What waits where: URLs waiting, hosts ready now, the busiest hosts, leases, retries, pause."""
        now = time.time() * 1000
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.key("fstat"), "waiting")
        pipe.zcard(self.key("hosts"))
        pipe.zcount(self.key("hosts"), "-inf", now)
        pipe.zcard(self.key("lease", "f"))
        pipe.zcard(self.key("lease", "p"))
        pipe.zcard(self.key("retry"))
        pipe.zrevrange(self.key("hostn"), 0, top - 1, withscores=True)
        pipe.get(self.key("paused"))
        pipe.hget(self.key("fstat"), "leases_expired")
        waiting, hosts, ready, fetching, processing, retry, busiest, paused, expired = pipe.execute()
        pipe = self.r.pipeline(transaction=False)
        for host, _ in busiest:
            pipe.zscore(self.key("hosts"), host)
        slots = pipe.execute() if busiest else []
        return {
            "waiting": int(waiting or 0),
            "hosts": int(hosts),
            "hosts_ready": int(ready),
            "fetching": int(fetching),
            "processing": int(processing),
            "retrying": int(retry),
            "leases_expired": int(expired or 0),
            "paused": paused.decode() if paused else None,
            "busiest": [
                {
                    "host": h.decode(),
                    "waiting": int(n),
                    "next_in": None if s is None else round(max(0.0, (s - now) / 1000), 2),
                }
                for (h, n), s in zip(busiest, slots, strict=True)
            ],
        }

    def pending_ids(self, batch: str | None = None) -> list[str]:
        """Ids of pending URLs (of one batch, or all): the jobs still in the frontier."""
        out = []
        for field_, raw in self.r.hscan_iter(self.key("jobs"), count=1000):
            if batch is None or json.loads(raw).get("batch") == batch:
                out.append(field_.hex())
        if batch is not None:  # URLs this batch adopted from earlier ones
            for field_, raw in self.r.hscan_iter(self.key("adopt"), count=1000):
                if batch in raw.decode().split() and field_.hex() not in out:
                    out.append(field_.hex())
        return out


def _held(job: dict[str, Any]) -> list[Any]:
    """The first arguments of every script a task calls on its URL: id, claim token, lease generation."""
    return [bytes.fromhex(job["id"]), job["token"], job["gen"]]


def _jobs(flat: Sequence[Any]) -> list[dict[str, Any]]:
    jobs = []
    for i in range(0, len(flat), 4):
        _id, token, raw, gen = flat[i : i + 4]
        job = json.loads(raw)
        job["token"] = token.decode() if isinstance(token, bytes) else token
        job["gen"] = gen.decode() if isinstance(gen, bytes) else str(gen)
        jobs.append(job)
    return jobs
