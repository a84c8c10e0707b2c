"""`ingest submit` with every source, run as a user would (subprocess), against real Redis and HTTP."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.conftest import ingest
from tests.producers.conftest import frontier_jobs, waiting

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def _rss(*links: str) -> str:
    items = "".join(f"<item><title>t</title><link>{u}</link></item>" for u in links)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>c</title>{items}</channel></rss>'


def test_submit_reads_every_source_at_once(docs, ingest_env, tmp_path: Path, redis_client) -> None:
    """Positional URLs, a file, stdin, a feed, a gzip sitemap and a feeds file all go into one batch."""
    feed = docs.add("/feed.xml", _rss("http://cli.example/feed-1", "http://cli.example/feed-2"))
    sm = docs.add(
        "/sitemap.xml.gz",
        gzip.compress(f"<urlset {NS}><url><loc>http://cli.example/sm-1</loc></url></urlset>".encode()),
        content_type="application/gzip",
    )
    listed = docs.add("/listed.xml", _rss("http://cli.example/listed-1"))
    url_file = tmp_path / "urls.txt"
    url_file.write_text("# list\nhttp://cli.example/file-1\n")
    feeds_file = tmp_path / "feeds.txt"
    feeds_file.write_text(f"# feeds\n{listed}\n")
    out = ingest(
        "submit",
        "http://cli.example/pos-1",
        "-f",
        str(url_file),
        "-f",
        "-",
        "--feed",
        feed,
        "--sitemap",
        sm,
        "--feeds-file",
        str(feeds_file),
        "--json",
        env=ingest_env,
        stdin="http://cli.example/stdin-1\n",
    )
    result = json.loads(out.stdout)
    assert (result["accepted"], result["rejected"]) == (7, [])
    assert waiting(redis_client, ingest_env["INGEST_KEY_PREFIX"]) == 7


def test_bad_documents_are_reported_and_good_urls_still_queued(docs, ingest_env, redis_client) -> None:
    """A 404 feed and an HTML 'sitemap' are reported with reasons on stderr; the good feed is queued."""
    good = docs.add("/good.xml", _rss("http://cli.example/ok"))
    html = docs.add("/page.html", "<!doctype html><html><body>x</body></html>", content_type="text/html")
    proc = ingest(
        "submit", "--feed", docs.url("/gone.xml"), "--sitemap", html, "--feed", good, "--json", env=ingest_env
    )
    assert json.loads(proc.stdout)["accepted"] == 1
    jobs = frontier_jobs(redis_client, ingest_env["INGEST_KEY_PREFIX"])
    assert [j["url"] for j in jobs] == ["http://cli.example/ok"]
    assert "http_404" in proc.stderr and "not_a_sitemap" in proc.stderr
    assert "source problems: http_404: 1, not_a_sitemap: 1" in proc.stderr


def test_binary_url_file_is_refused_line_by_line(ingest_env, tmp_path: Path) -> None:
    """A binary file among URLs exits 0 with reasons counted; the valid URL in it still goes through."""
    path = tmp_path / "mixed.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\rIHDR\xff\xfe\nhttp://cli.example/valid\ncaf\xe9 \x01\n")
    result = json.loads(ingest("submit", "-f", str(path), "--json", env=ingest_env).stdout)
    assert result["accepted"] == 1
    assert {r["reason"] for r in result["rejected"]} <= {"not_utf8", "control_character", "invalid_url"}


def test_submit_exits_nonzero_when_every_feed_and_sitemap_failed(docs, ingest_env) -> None:
    """Cron must notice: a feed that 404s and a sitemap that is not XML, nothing else given: exit 1."""
    missing = docs.url("/no-such-feed.xml")
    broken = docs.add("/broken-sitemap.xml", b"\x00\x01 not xml at all")
    out = ingest("submit", "--feed", missing, "--sitemap", broken, env=ingest_env, check=False)
    assert out.returncode == 1, out.stderr
    assert "every feed and sitemap failed" in out.stderr
    good = docs.add("/feed.xml", _rss("http://cli.example/ok-1"))
    ok = ingest("submit", "--feed", missing, "--feed", good, "--json", env=ingest_env, check=False)
    assert ok.returncode == 0, ok.stderr  # one source worked: not a failure of the command
    assert json.loads(ok.stdout)["accepted"] == 1
