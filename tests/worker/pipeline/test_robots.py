"""robots.txt policy against a real server and a real Redis, following RFC 9309."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from ingest_core.errors import HostUnreachable, InvalidURL, RateLimited
from ingest_core.fetch import Fetcher
from tests.faultserver import FaultServer
from worker.pipeline.robots import RobotsPolicy, robots_url

UA = "article-ingest/0.1 (+https://example.invalid/bot)"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer("127.0.0.1") as srv:
        yield srv


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix; only its keys are deleted afterwards (the Redis may be shared)."""
    p = f"test-robots-{uuid.uuid4().hex[:10]}"
    yield p
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{p}:*"):
        client.delete(key)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher(
        user_agent=UA,
        connect_timeout=2,
        read_timeout=2,
        deadline=5,
        max_bytes=1 << 20,
        max_redirects=5,
        allow_networks=["127.0.0.0/8"],
    )


def policy(client: redis.Redis, fetcher: Fetcher, prefix: str, **kw: float) -> RobotsPolicy:
    options = {"ttl": 3600.0, "max_crawl_delay": 30.0}
    options.update(kw)
    ttl = options.pop("ttl")
    cap = options.pop("max_crawl_delay")
    return RobotsPolicy(client, fetcher, UA, ttl, prefix, cap, **options)


def test_disallowed_path_is_refused(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """A path under a Disallow rule for * is not allowed."""
    server.set_robots("User-agent: *\nDisallow: /private/\n")
    assert policy(client, fetcher, prefix).check(server.url("/private/page")) == (False, None)


def test_other_paths_are_allowed(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """A path no rule matches is allowed."""
    server.set_robots("User-agent: *\nDisallow: /private/\n")
    assert policy(client, fetcher, prefix).check(server.url("/article/1")) == (True, None)


def test_group_for_our_user_agent_wins_over_star(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """Rules in a group naming our product token apply instead of the * group."""
    server.set_robots("User-agent: *\nDisallow: /\n\nUser-agent: article-ingest\nDisallow: /drafts/\n")
    p = policy(client, fetcher, prefix)
    assert p.check(server.url("/article/1"))[0] is True
    assert p.check(server.url("/drafts/1"))[0] is False


def test_crawl_delay_is_returned(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """Crawl-delay comes back as the second element of check()."""
    server.set_robots("User-agent: *\nCrawl-delay: 7\n")
    assert policy(client, fetcher, prefix).check(server.url("/a")) == (True, 7.0)


def test_crawl_delay_is_capped(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """An absurd Crawl-delay is capped at max_crawl_delay."""
    server.set_robots("User-agent: *\nCrawl-delay: 86400\n")
    assert policy(client, fetcher, prefix, max_crawl_delay=30.0).check(server.url("/a")) == (True, 30.0)


def test_request_rate_becomes_a_delay(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """Request-rate: 1/10 means one request every 10 seconds."""
    server.set_robots("User-agent: *\nRequest-rate: 1/10\n")
    assert policy(client, fetcher, prefix).check(server.url("/a")) == (True, 10.0)


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_robots_4xx_allows_everything(client, fetcher, prefix, server, status: int) -> None:  # noqa: ANN001
    """RFC 9309: an unavailable robots.txt (4xx) means no restrictions."""
    server.set_robots("User-agent: *\nDisallow: /\n", status=status)
    assert policy(client, fetcher, prefix).check(server.url("/anything")) == (True, None)


@pytest.mark.parametrize("status", [500, 503])
def test_robots_5xx_disallows_for_a_while(client, fetcher, prefix, server, status: int) -> None:  # noqa: ANN001
    """RFC 9309: an unreachable robots.txt (5xx) disallows; check raises RateLimited until error_ttl ends."""
    server.set_robots("oops", status=status)
    with pytest.raises(RateLimited) as info:
        policy(client, fetcher, prefix, error_ttl=120.0).check(server.url("/a"))
    assert info.value.reason == "robots_unreachable"
    assert 60.0 < info.value.retry_after <= 120.0


def test_unreachable_robots_answer_is_cached(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """While the 5xx answer is cached, further checks do not hit the server again."""
    server.set_robots("oops", status=503)
    for p in (policy(client, fetcher, prefix), policy(client, fetcher, prefix)):
        with pytest.raises(RateLimited):
            p.check(server.url("/a"))
    assert server.hits["/robots.txt"] == 1


def test_refused_connection_gives_the_page_connection_refused(client, fetcher, prefix) -> None:  # noqa: ANN001
    """No server at all: the check raises the fetch's own HostUnreachable connection_refused (quick retries),
    not robots_unreachable for error_ttl."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HostUnreachable) as info:
        policy(client, fetcher, prefix, error_ttl=600.0).check(f"http://127.0.0.1:{port}/a")
    assert info.value.reason == "connection_refused" and not isinstance(info.value, RateLimited)
    assert sum(info.value.retry_delays or ()) < 10


def test_offline_name_gives_the_page_dns_error(client, fetcher, prefix, monkeypatch) -> None:  # noqa: ANN001
    """Offline (EAI_AGAIN): the check raises HostUnreachable dns_error; a moment later (the page's first
    quick retry) robots.txt is tried again, and once the name resolves its rules apply."""
    with FaultServer("127.0.0.1") as srv:
        srv.set_robots("User-agent: *\nDisallow: /private/\n")
        real = socket.getaddrinfo
        offline = True

        def resolve(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
            if host == "news.offline.test":
                if offline:
                    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
                return real("127.0.0.1", port, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        p = policy(client, fetcher, prefix, error_ttl=600.0)
        url = f"http://news.offline.test:{srv.port}/private/1"
        with pytest.raises(HostUnreachable) as info:
            p.check(url)
        assert info.value.reason == "dns_error" and "Temporary failure" in info.value.detail
        offline = False
        time.sleep(min(HostUnreachable.retry_delays or (1.0,)))
        assert p.check(url) == (False, None)


def test_trickled_robots_head_ends_at_the_fetch_deadline(client, prefix, server) -> None:  # noqa: ANN001
    """A robots.txt whose headers drip in a byte at a time is unreachable once the fetch deadline passes."""
    server.set_robots("User-agent: *\n", trickle="header")
    quick = Fetcher(
        user_agent=UA,
        connect_timeout=2,
        read_timeout=2,
        deadline=2,
        max_bytes=1 << 20,
        max_redirects=5,
        allow_networks=["127.0.0.0/8"],
    )
    start = time.monotonic()
    with pytest.raises(RateLimited) as info:
        policy(client, quick, prefix).check(server.url("/a"))
    assert info.value.reason == "robots_unreachable" and "timeout" in info.value.detail
    assert time.monotonic() - start < 2 + 2.5


def test_robots_is_fetched_once_for_the_fleet(client, redis_url, fetcher, prefix, server) -> None:  # noqa: ANN001
    """Sixteen threads on eight policies (separate processes' caches) check a cold host: one robots fetch."""
    server.set_robots("User-agent: *\nDisallow: /private/\n", delay=0.3)
    policies = [policy(redis.Redis.from_url(redis_url), fetcher, prefix) for _ in range(8)]
    answers: list[tuple[bool, float | None]] = []
    gate = threading.Barrier(16)

    def worker(i: int) -> None:
        gate.wait()
        answers.append(policies[i % 8].check(server.url(f"/private/{i}")))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [(False, None)] * 16
    assert server.hits["/robots.txt"] == 1


def test_robots_is_cached_in_redis_with_the_ttl(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """The parsed outcome lives under <prefix>:robots:<origin> and expires after ttl."""
    policy(client, fetcher, prefix, ttl=300.0).check(server.url("/a"))
    key = f"{prefix}:robots:http://127.0.0.1:{server.port}"
    assert 0 < client.pttl(key) <= 300_000


def test_robots_is_fetched_again_after_the_ttl(client, fetcher, prefix, server) -> None:  # noqa: ANN001
    """Once the cached copy expires, the next check fetches robots.txt again and sees new rules."""
    server.set_robots("User-agent: *\nDisallow: /a\n")
    p = policy(client, fetcher, prefix, ttl=0.3)
    assert p.check(server.url("/a"))[0] is False
    server.set_robots("User-agent: *\nAllow: /\n")
    time.sleep(0.5)
    assert p.check(server.url("/a"))[0] is True
    assert server.hits["/robots.txt"] == 2


def test_hosts_have_separate_robots(client, fetcher, prefix) -> None:  # noqa: ANN001
    """robots.txt of 127.0.0.2 does not apply to 127.0.0.3."""
    with FaultServer("127.0.0.2") as a, FaultServer("127.0.0.3") as b:
        a.set_robots("User-agent: *\nDisallow: /\n")
        b.set_robots("User-agent: *\nAllow: /\n")
        p = policy(client, fetcher, prefix)
        assert p.check(a.url("/x"))[0] is False
        assert p.check(b.url("/x"))[0] is True


def test_non_http_url_is_invalid(client, fetcher, prefix) -> None:  # noqa: ANN001
    """A URL without an http(s) origin cannot have robots.txt: InvalidURL."""
    with pytest.raises(InvalidURL):
        policy(client, fetcher, prefix).check("ftp://example.com/file")


def test_robots_url_is_per_scheme_host_and_port() -> None:
    """The robots.txt location keeps scheme and non-default port and drops path, query and userinfo."""
    assert robots_url("https://user:pw@Example.COM:443/a/b?q=1") == (
        "https://example.com",
        "https://example.com/robots.txt",
    )
    assert robots_url("http://example.com:8080/x")[1] == "http://example.com:8080/robots.txt"


def test_a_stuck_fetch_elsewhere_is_waited_on_for_the_fetch_deadline_only(client, prefix, server) -> None:  # noqa: ANN001
    """Another process holds the robots.txt fetch lock and never answers: a check waits the fetch deadline
    plus a margin (then fetches for itself), not a fixed minute."""
    from worker.pipeline.robots import LOCK_MARGIN

    quick = Fetcher(
        user_agent=UA,
        connect_timeout=2,
        read_timeout=2,
        deadline=2,
        max_bytes=1 << 20,
        max_redirects=5,
        allow_networks=["127.0.0.1/32"],
    )
    server.set_robots("User-agent: *\nDisallow: /private/\n")
    client.set(f"{prefix}:robots:http://127.0.0.1:{server.port}:lock", "someone-else", px=600_000)
    start = time.monotonic()
    assert policy(client, quick, prefix).check(server.url("/private/1")) == (False, None)
    assert time.monotonic() - start < 2 + LOCK_MARGIN + 2.5
