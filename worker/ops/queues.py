"""Messages waiting per queue, on a Redis or an AMQP (RabbitMQ) broker: what Flower does not show."""

from __future__ import annotations

from collections.abc import Sequence

QUEUES = ("fetch", "process")
"""The queues of our tasks."""


def queue_depths(broker_url: str, queues: Sequence[str] = QUEUES, timeout: float = 5.0) -> dict[str, int]:
    """Ready messages per queue; on Redis also ``unacked`` (reserved by a worker, not yet acknowledged).

    Empty for a broker we cannot inspect. Raises the client's error when the broker is unreachable.
    """
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        r = redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        pipe = r.pipeline(transaction=False)
        for q in queues:
            pipe.llen(q)
        pipe.hlen("unacked")
        *depths, unacked = pipe.execute()
        return {**dict(zip(queues, depths, strict=True)), "unacked": unacked}
    if broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        from kombu import Connection

        out = {}
        with Connection(broker_url, connect_timeout=timeout) as conn:
            channel = conn.channel()
            for q in queues:
                # passive: report, never create; a queue no worker declared yet holds nothing
                try:
                    out[q] = channel.queue_declare(queue=q, passive=True).message_count
                except conn.channel_errors:
                    channel = conn.channel()
                    out[q] = 0
        return out
    return {}


def purge_queues(broker_url: str, queues: Sequence[str] = QUEUES) -> int:
    """Drop every ready message of our queues (after ``ingest cancel --all``); returns how many."""
    from kombu import Connection

    n = 0
    with Connection(broker_url, connect_timeout=5) as conn:
        for q in queues:
            try:
                n += conn.default_channel.queue_purge(q) or 0
            except conn.channel_errors:
                pass
    return n
