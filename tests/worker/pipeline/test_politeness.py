"""Per-host politeness in Redis: one request per host per interval, fleet-wide, hosts independent."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from ingest_core.fetch import Fetcher
from tests.faultserver import fault_servers
from worker.pipeline.politeness import HostPoliteness


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix; only its keys are deleted afterwards (the Redis may be shared)."""
    p = f"test-polite-{uuid.uuid4().hex[:10]}"
    yield p
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{p}:*"):
        client.delete(key)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_first_caller_may_fetch_now(client: redis.Redis, prefix: str) -> None:
    """The first acquire for a host returns 0.0."""
    assert HostPoliteness(client, 5.0, prefix).acquire("a.example") == 0.0


def test_second_caller_within_the_interval_is_told_to_wait(client: redis.Redis, prefix: str) -> None:
    """A second acquire inside the interval gets the remaining wait, bounded by the interval."""
    polite = HostPoliteness(client, 5.0, prefix)
    polite.acquire("a.example")
    wait = polite.acquire("a.example")
    assert 0.0 < wait <= 5.0


def test_slot_frees_after_the_interval(client: redis.Redis, prefix: str) -> None:
    """Once the interval has passed, the host may be fetched again."""
    polite = HostPoliteness(client, 0.2, prefix)
    assert polite.acquire("a.example") == 0.0
    time.sleep(0.3)
    assert polite.acquire("a.example") == 0.0


def test_one_host_waiting_does_not_delay_another(client: redis.Redis, prefix: str) -> None:
    """127.0.0.2 being busy says nothing about 127.0.0.3: it may be fetched at once."""
    polite = HostPoliteness(client, 30.0, prefix)
    assert polite.acquire("127.0.0.2") == 0.0
    assert polite.acquire("127.0.0.2") > 0.0
    assert polite.acquire("127.0.0.3") == 0.0


def test_only_one_of_many_racing_callers_gets_the_slot(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    """32 threads on 4 separate clients ("machines") race for one host: exactly one may fetch now."""
    machines = [HostPoliteness(redis.Redis.from_url(redis_url), 30.0, prefix) for _ in range(4)]
    results: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(32)

    def worker(i: int) -> None:
        start.wait()
        wait = machines[i % 4].acquire("busy.example")
        with lock:
            results.append(wait)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 32
    assert results.count(0.0) == 1
    assert all(0 < w <= 30.0 for w in results if w)


def test_crawl_delay_lengthens_the_interval(client: redis.Redis, prefix: str) -> None:
    """min_interval (robots Crawl-delay) longer than the default interval is what the wait reflects."""
    polite = HostPoliteness(client, 1.0, prefix)
    polite.acquire("slow.example", min_interval=20.0)
    assert polite.acquire("slow.example") > 1.0


def test_crawl_delay_never_shortens_the_interval(client: redis.Redis, prefix: str) -> None:
    """A min_interval below the default interval does not make the host go faster."""
    polite = HostPoliteness(client, 20.0, prefix)
    polite.acquire("a.example", min_interval=0.01)
    time.sleep(0.05)
    assert polite.acquire("a.example", min_interval=0.01) > 1.0


def test_zero_interval_never_waits(client: redis.Redis, prefix: str) -> None:
    """interval 0 disables politeness."""
    polite = HostPoliteness(client, 0.0, prefix)
    assert [polite.acquire("a.example") for _ in range(3)] == [0.0, 0.0, 0.0]


def test_host_names_are_case_insensitive(client: redis.Redis, prefix: str) -> None:
    """Example.COM and example.com share one slot."""
    polite = HostPoliteness(client, 30.0, prefix)
    polite.acquire("Example.COM")
    assert polite.acquire("example.com") > 0.0


def test_key_prefixes_isolate_deployments(client: redis.Redis, prefix: str) -> None:
    """Two deployments on one Redis (different prefixes) do not share slots."""
    assert HostPoliteness(client, 30.0, prefix).acquire("a.example") == 0.0
    assert HostPoliteness(client, 30.0, prefix + "-other").acquire("a.example") == 0.0
    client.delete(f"{prefix}-other:polite:a.example")


def test_requeue_loop_serves_a_fast_host_while_a_polite_host_waits(client: redis.Redis, prefix: str) -> None:
    """A scheduler that re-queues on a wait fetches 127.0.0.3 right away while 127.0.0.2 is spaced out.

    Four URLs on host A, one on host B, interval 0.4 s: B is served before A's second request, and A's
    requests reach its server at least about an interval apart.
    """
    interval = 0.4
    polite = HostPoliteness(client, interval, prefix)
    fetcher = Fetcher(
        user_agent="t",
        connect_timeout=2,
        read_timeout=2,
        deadline=5,
        max_bytes=1 << 20,
        max_redirects=0,
        allow_networks=["127.0.0.0/8"],
    )
    served: list[tuple[float, str]] = []
    with fault_servers("127.0.0.2", "127.0.0.3") as (a, b):
        queue = [(0.0, a.host, a.url(f"/article/{i}")) for i in range(4)] + [
            (0.0, b.host, b.url("/article/9"))
        ]
        while queue:
            queue.sort()
            ready_at, host, url = queue.pop(0)
            time.sleep(max(0.0, ready_at - time.monotonic()))
            wait = polite.acquire(host)
            if wait:
                queue.append((time.monotonic() + wait, host, url))  # re-queue with a countdown, no sleeping
                continue
            fetcher.fetch(url)
            served.append((time.monotonic(), host))
    hosts = [h for _, h in served]
    assert hosts.index("127.0.0.3") < hosts.index("127.0.0.2", 1)
    a_times = [t for t, h in served if h == "127.0.0.2"]
    assert len(a_times) == 4
    assert all(
        later - earlier >= interval * 0.5 for earlier, later in zip(a_times, a_times[1:], strict=False)
    )
