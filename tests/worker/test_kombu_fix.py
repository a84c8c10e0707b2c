"""kombu's Redis transport under Redis faults, driven directly (no Celery): the guards of worker.kombu_fix.

Each test starts its own append-only Redis, so killing or filling it hurts nobody else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

import worker.kombu_fix
from tests.reliability._harness import AppendOnlyRedis

worker.kombu_fix.install()  # what worker.celery_app does on import

QUEUE = Queue("kf", Exchange("kf", type="direct"), routing_key="kf")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[AppendOnlyRedis]:
    server = AppendOnlyRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def _consumer(conn: Connection) -> list:
    """Declare the queue and start consuming it with acks pending; returns the list messages land in."""
    channel = conn.default_channel
    QUEUE(channel).declare()
    got: list = []
    Consumer(channel, [QUEUE], callbacks=[lambda body, message: got.append(message)]).consume()
    return got


def _publish(conn: Connection, n: int = 1) -> None:
    producer = Producer(conn.default_channel)
    for i in range(n):
        producer.publish({"n": i}, exchange=QUEUE.exchange, routing_key="kf")


def _drain_until(conn: Connection, got: list, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=1)
        except TimeoutError:
            pass
    assert len(got) == n


def test_closing_after_a_broker_restart_does_not_crash_and_restores_within_seconds(broker) -> None:  # noqa: ANN001
    """Redis dies while a message is unacked; the channel is closed after its transport was cleared (the
    state Celery's consumer reaches when its first close failed on the dead BRPOP and collect() went on):
    no AttributeError ('NoneType' object has no attribute 'hostname'), and once Redis is back the message
    is on its queue again within seconds, not after the visibility timeout."""
    conn = Connection(broker.url, transport_options={"visibility_timeout": 3600})
    got = _consumer(conn)
    _publish(conn)
    _drain_until(conn, got, 1)
    client = redis.Redis.from_url(broker.url)
    assert client.hlen("unacked") == 1
    channel = conn.default_channel
    broker.crash()
    conn._do_close_transport()  # what Connection.collect() ends with: transport.client = None
    channel.close()  # kombu rebuilt a pool from the cleared transport here, for the restore
    broker.start()
    deadline = time.monotonic() + 15
    while client.llen("kf") == 0:
        assert time.monotonic() < deadline, "the unacked message was not restored after Redis came back"
        time.sleep(0.2)
    assert (client.llen("kf"), client.hlen("unacked")) == (1, 0)


def test_a_message_taken_while_redis_is_full_is_delivered_and_acked(broker) -> None:  # noqa: ANN001
    """Redis at maxmemory (noeviction): taking a message (recording it as unacked is refused) and acking a
    message taken before (a MULTI, refused too) both work; nothing raises OutOfMemoryError."""
    client = redis.Redis.from_url(broker.url)
    conn = Connection(broker.url)
    got = _consumer(conn)
    _publish(conn, 2)
    _drain_until(conn, got, 1)  # the first is recorded as unacked while there is room
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    try:
        _drain_until(conn, got, 2)  # the second is taken while Redis refuses to record it
        assert [m.payload for m in got] == [{"n": 0}, {"n": 1}]
        for message in got:
            message.ack()
        assert client.hlen("unacked") == 0
        assert int(client.info("errorstats").get("errorstat_OOM", {}).get("count", 0)) > 0
    finally:
        client.config_set("maxmemory", "0")
        conn.release()
