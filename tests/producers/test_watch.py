"""Watch mode: conditional GET keeps an unchanged feed at one 304, only new URLs are queued, clean stop."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import threading
import time

import pytest

from ingest_core.settings import Settings
from producers import BrokerUnavailable, submit
from producers.cli import parse_duration, poll_once
from producers.sources import RedisValidators
from tests.conftest import REPO

SETTINGS = Settings(allow_private_networks=True, connect_timeout=2, read_timeout=2, fetch_deadline=5)


def rss(*links: str) -> str:
    items = "".join(f"<item><title>{link}</title><link>{link}</link></item>" for link in links)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>w</title>{items}</channel></rss>'


@pytest.fixture
def poll(state):
    """One watch poll against the test Redis, validators kept in Redis."""
    validators = RedisValidators(state.r, prefix=state.prefix)

    def run(*, feeds=(), sitemaps=(), submit_fn=None):
        return poll_once(
            SETTINGS,
            feeds=feeds,
            sitemaps=sitemaps,
            feeds_files=(),
            validators=validators,
            stop=threading.Event(),
            submit_fn=submit_fn or functools.partial(submit, state=state),
        )

    return run


def test_unchanged_feed_costs_one_304(docs, poll, state) -> None:
    """The second poll of an unchanged feed sends its ETag, gets a 304 and queues nothing."""
    url = docs.add("/feed.xml", rss("http://w.example/1", "http://w.example/2"), etag='"v1"')
    _, first = poll(feeds=[url])
    web, second = poll(feeds=[url])
    assert first.accepted == 2 and second.submitted == 0
    assert docs.hits["/feed.xml"] == 2 and docs.not_modified["/feed.xml"] == 1
    assert web.counts["not_modified"] == 1 and state.frontier.stats()["waiting"] == 2


def test_last_modified_alone_also_gives_a_304(docs, poll) -> None:
    """A server that only sends Last-Modified is asked If-Modified-Since and answers 304."""
    url = docs.add("/feed.xml", rss("http://w.example/1"), last_modified="Mon, 02 Mar 2026 08:00:00 GMT")
    poll(feeds=[url])
    poll(feeds=[url])
    assert docs.not_modified["/feed.xml"] == 1


def test_changed_feed_queues_only_urls_never_seen(docs, poll, state) -> None:
    """When the feed changes, the old entries are duplicates and only the new one is queued."""
    url = docs.add("/feed.xml", rss("http://w.example/1", "http://w.example/2"), etag='"v1"')
    poll(feeds=[url])
    docs.add("/feed.xml", rss("http://w.example/3", "http://w.example/1", "http://w.example/2"), etag='"v2"')
    _, second = poll(feeds=[url])
    # the old entries are still pending (no worker here): adopted by the second poll, not queued again
    assert (second.accepted, second.adopted, second.duplicates) == (1, 2, 0)
    assert state.frontier.stats()["waiting"] == 3


def test_validators_are_kept_only_after_a_successful_submit(docs, poll) -> None:
    """A poll whose submit failed stores no ETag, so the next poll reads the feed in full again."""
    url = docs.add("/feed.xml", rss("http://w.example/1"), etag='"v1"')

    def broken(*_a, **_k):
        raise BrokerUnavailable("broker down")

    with pytest.raises(BrokerUnavailable):
        poll(feeds=[url], submit_fn=broken)
    _, result = poll(feeds=[url])
    assert result.accepted == 1 and docs.not_modified.get("/feed.xml", 0) == 0


def test_unchanged_sitemap_index_still_checks_its_children(docs, poll, state) -> None:
    """A 304 on an index reuses its remembered children, each checked with its own conditional GET."""
    ns = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    docs.add("/news.xml", f"<urlset {ns}><url><loc>http://w.example/n1</loc></url></urlset>", etag='"n1"')
    index = f"<sitemapindex {ns}><sitemap><loc>{docs.url('/news.xml')}</loc></sitemap></sitemapindex>"
    url = docs.add("/index.xml", index, etag='"i1"')
    poll(sitemaps=[url])
    docs.add("/news.xml", f"<urlset {ns}><url><loc>http://w.example/n2</loc></url></urlset>", etag='"n2"')
    _, second = poll(sitemaps=[url])
    assert docs.not_modified == {"/index.xml": 1} and second.accepted == 1
    assert state.frontier.stats()["waiting"] == 2


def test_durations_are_parsed() -> None:
    """--every takes seconds or a unit: 90, 30s, 10m, 1.5h."""
    assert [parse_duration(v) for v in ("90", "30s", "10m", "1.5h")] == [90, 30, 600, 5400]


def test_watch_command_stops_cleanly_on_sigterm(docs, ingest_env) -> None:
    """`ingest watch` polls, waits, and on SIGTERM exits 0 with 'watch stopped'."""
    url = docs.add("/feed.xml", rss("http://w.example/1"), etag='"v1"')
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "watch", "--feed", url, "--every", "1h"],
        env=ingest_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("poll 1:") or not line:
            break
    assert any(line.startswith("poll 1: 1 documents") for line in lines), lines
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "watch stopped" in out
