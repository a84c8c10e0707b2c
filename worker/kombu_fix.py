"""Two guards for kombu's Redis transport, so that Redis faults are outages a worker rides out, not exits.

1. Closing a channel again after the broker went away must not crash (a restart under held messages).
2. A message popped while Redis is full must not crash the consumer (maxmemory with noeviction).

Guard 1.

The crash (issue 12, a fetch worker holding unacknowledged messages while Redis restarts)::

    Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")
      consumer.on_connection_error_after_connected -> connection.close() -> Channel.close()
      -> QoS.restore_unacked_once() -> restore_unacked() -> conn_or_acquire() -> _create_client()
      -> Channel.pool -> _get_pool() -> _connparams(): conninfo = self.connection.client  # None

Why: on a lost connection Celery first calls ``Connection.collect()``. Its channel close fails half-way (the
BRPOP in flight is read from the dead socket and raises ``ConnectionError`` before the virtual close and
its restore run; ``maybe_close_channel`` swallows it) and ``collect()`` then clears the transport
(``transport.client = None``). Celery next calls ``connection.close()``, which closes the same default
channel again: this time it gets as far as restoring the unacknowledged messages, and the channel's
connection pool, dropped by the first attempt, is rebuilt from ``self.connection.client``, which is now
None. ``ignore_errors`` only ignores connection errors, so the AttributeError stops the worker (celery/kombu
#582 and #970 hit the same dead transport from other paths).

Guard: a channel whose transport is gone raises ``redis.ConnectionError`` instead when it needs a new
pool, which every caller on this path already treats as "broker away": the close completes and the consumer
reconnects.

The restore itself cannot succeed at that moment (Redis is down), and kombu does not try again: the
messages stay in Redis's unacked hash until the visibility timeout (an hour by default), while Celery has
already dropped the ones it had not started ("they will be redelivered"). So a restore that fails on a
connection error is deferred: a background thread retries it every second on a fresh connection (the
channel's connection parameters, kept while they were valid) and puts each message that is still unacked
back on its queue, as kombu would have done at close: within seconds of Redis coming back, not an hour.
A message whose task was still running here is delivered twice, as with kombu's own restore; tasks are
idempotent (a re-delivery of a finished URL ends at once).

Guard 2. With ``maxmemory`` and ``noeviction``, Redis refuses every command that may grow memory with OOM.
The consumer's BRPOP still pops a message (popping frees memory), then kombu records it as unacknowledged
(``ZADD unacked_index`` + ``HSET unacked`` in ``QoS.append``); that write is refused, and the
``OutOfMemoryError`` (not a connection error) ends the worker: "Unrecoverable error: OutOfMemoryError", and
the popped message is gone with it. Guard: that one write may fail on OOM; the message is then kept only in
the worker's memory and runs (its task rides out the full Redis in ``worker.tasks.through_outage``); its ack
later removes nothing. A worker killed before the ack loses it like kombu's pop-then-record window
(celery/kombu#305), which the frontier's leases recover.

The ack is refused too: kombu deletes the unacked entry in a MULTI, and a full Redis refuses every command
queued in a MULTI, deletes included. Guard: on OOM the same two deletes (ZREM, HDEL) go in a plain pipeline,
which a full Redis accepts (they free memory). A reject with requeue cannot push the message back (LPUSH
grows memory): it stays in the unacked hash and comes back after the visibility timeout.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)

_PATCHED = "_ingest_redis_fault_guards"

DEFERRED_RESTORE_FOR = 3600.0
"""Seconds a deferred restore keeps trying (kombu's own visibility-timeout restore takes over after)."""

_deferred: list[dict[str, Any]] = []
_deferred_lock = threading.Lock()
_deferred_thread: threading.Thread | None = None


def is_oom(exc: BaseException) -> bool:
    """Redis refused a command because it is full: OutOfMemoryError, or a script refused with "-OOM"."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc)
    )


def _defer_restore(qos: Any, tags: list[Any]) -> None:
    """Remember what a failed restore-at-close should have put back, and start the retrying thread."""
    global _deferred_thread
    channel = qos.channel
    params = getattr(channel, "_ingest_connparams", None)
    if not params or not tags:
        return
    job = {
        "params": params,
        "unacked": qos.unacked_key,
        "index": qos.unacked_index_key,
        "bindings": channel.keyprefix_queue,
        "sep": channel.sep,
        "tags": list(tags),
        "until": time.monotonic() + DEFERRED_RESTORE_FOR,
    }
    log.warning(
        "broker unreachable: %d unacknowledged message(s) will be restored once it is back", len(tags)
    )
    with _deferred_lock:
        _deferred.append(job)
        if _deferred_thread is None or not _deferred_thread.is_alive():
            _deferred_thread = threading.Thread(target=_restore_deferred, name="kombu-restore", daemon=True)
            _deferred_thread.start()


def _restore_deferred() -> None:
    while True:
        with _deferred_lock:
            jobs = list(_deferred)
            if not jobs:
                return
        for job in jobs:
            try:
                restored = _restore(job)
            except (redis.RedisError, OSError):
                if time.monotonic() < job["until"]:
                    continue
                restored = 0
            with _deferred_lock:
                _deferred.remove(job)
            log.warning("restored %d unacknowledged message(s) after the broker came back", restored)
        time.sleep(1.0)


def _restore(job: dict[str, Any]) -> int:
    """Put each still-unacked message of ``job`` back on its queues, like kombu's restore_by_tag."""
    client = redis.Redis(connection_pool=redis.ConnectionPool(**job["params"]))
    restored = 0
    try:
        for tag in job["tags"]:

            def transaction(pipe: Any, tag: Any = tag) -> None:
                nonlocal restored
                raw = pipe.hget(job["unacked"], tag)
                queues = []
                if raw:
                    payload, exchange, routing_key = json.loads(raw)
                    payload.get("headers", {})["redelivered"] = True
                    payload.get("properties", {}).get("delivery_info", {})["redelivered"] = True
                    members = pipe.smembers(job["bindings"] % exchange)
                    for member in members:
                        key, _, queue = member.decode().split(job["sep"])
                        if key == routing_key or not key:
                            queues.append(queue)
                    queues = queues or [routing_key]
                pipe.multi()
                pipe.zrem(job["index"], tag)
                pipe.hdel(job["unacked"], tag)
                for queue in queues:
                    pipe.rpush(queue, json.dumps(payload))  # the consuming end: delivered next
                restored += bool(queues)

            client.transaction(transaction, job["unacked"])
    finally:
        client.close()
    return restored


def install() -> None:
    """Patch ``kombu.transport.redis.Channel`` (and so ``SentinelChannel``) and its ``QoS``, once."""
    channel, qos = kombu_redis.Channel, kombu_redis.QoS
    if getattr(channel, _PATCHED, False):
        return
    original = channel._connparams
    original_append = qos.append
    original_ack = qos.ack
    original_reject = qos.reject
    original_restore_unacked = qos.restore_unacked

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or getattr(transport, "client", None) is None:
            raise redis.exceptions.ConnectionError(
                "kombu channel used after its transport was closed (broker connection lost)"
            )
        params = original(self, asynchronous=asynchronous)
        if not hasattr(self, "_ingest_connparams"):
            # plain (synchronous) parameters, kept for a deferred restore once the transport is gone
            self._ingest_connparams = params if not asynchronous else original(self, asynchronous=False)
        return params

    def restore_unacked(self: Any, client: Any = None) -> None:
        tags = list(self._delivered)
        try:
            original_restore_unacked(self, client)
        except self.channel.connection_errors:
            _defer_restore(self, tags)
            self._delivered.clear()

    def append(self: Any, message: Any, delivery_tag: Any) -> None:
        try:
            original_append(self, message, delivery_tag)
        except redis.exceptions.ResponseError as exc:
            if not is_oom(exc):
                raise
            log.warning(
                "Redis is full (OOM): message %s is held in memory only until acknowledged", delivery_tag
            )
            virtual.QoS.append(self, message, delivery_tag)

    def _forget(self: Any, delivery_tag: Any) -> None:
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)  # no MULTI: a full Redis still takes deletes
            pipe.zrem(self.unacked_index_key, delivery_tag).hdel(self.unacked_key, delivery_tag).execute()

    def ack(self: Any, delivery_tag: Any) -> None:
        try:
            original_ack(self, delivery_tag)
        except redis.exceptions.ResponseError as exc:
            if not is_oom(exc):
                raise
            _forget(self, delivery_tag)
            virtual.QoS.ack(self, delivery_tag)

    def reject(self: Any, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            original_reject(self, delivery_tag, requeue=requeue)
        except redis.exceptions.ResponseError as exc:
            if not is_oom(exc):
                raise
            if requeue:
                log.warning("Redis is full (OOM): %s left unacked until visibility timeout", delivery_tag)
            else:
                _forget(self, delivery_tag)
            virtual.QoS.ack(self, delivery_tag)

    channel._connparams = _connparams
    qos.append = append
    qos.ack = ack
    qos.reject = reject
    qos.restore_unacked = restore_unacked
    setattr(channel, _PATCHED, True)
