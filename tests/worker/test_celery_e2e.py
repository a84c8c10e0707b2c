"""End to end through real Celery workers on a real Redis, fetching from a real HTTP server on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema

from tests.conftest import Workers, article_html, author_name, ingest
from tests.faultserver import FaultServer
from worker.pipeline.store import read_records
from worker.record import SCHEMA_VERSION, record_schema


def _wait_for_batch(batch: str, env: dict[str, str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = json.loads(ingest("stats", "--json", "--batch", batch, env=env).stdout)
        if stats["submitted"] and stats["pending"] == 0:
            return stats
        assert time.monotonic() < deadline, f"batch not terminal after {timeout}s: {stats}"
        time.sleep(0.3)


def _article_hits(hits: dict[str, int]) -> int:
    return sum(n for path, n in hits.items() if path.startswith("/articles/"))


def test_submitted_urls_become_records_through_celery_workers(workers, page_server, page_hits, tmp_path):
    """25 article URLs plus bad input: records field by field, terminal counts adding up, no re-fetch."""
    env = workers.env
    articles = [f"{page_server}/articles/story-{n}.html" for n in range(25)]
    bad = [
        f"{page_server}/articles/missing.html",
        f"{page_server}/pdf",
        f"{page_server}/empty",
        f"{page_server}/articles/copy-of-story-0.html",
        "mailto:someone@example.com",
        "not a url",
    ]
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text("# a comment\n\n" + "\n".join(articles + bad) + "\n")

    out = json.loads(ingest("submit", "-f", str(urls_file), "--json", env=env).stdout)
    assert (out["submitted"], out["accepted"], len(out["rejected"])) == (31, 29, 2)
    stats = _wait_for_batch(out["batch"], env)

    assert stats["submitted"] == 31
    assert stats["stored"] == 25
    assert stats["duplicate_reasons"] == {"same_text": 1}
    assert stats["failed_reasons"] == {"http_404": 1}
    assert stats["skipped_reasons"] == {
        "not_html": 1,
        "no_text": 1,
        "unsupported_scheme": 1,
        "invalid_url": 1,
    }
    assert stats["stored"] + stats["duplicate"] + stats["skipped"] + stats["failed"] == stats["submitted"]

    workers.stop()  # warm shutdown publishes the open part files
    records = {r["url"]: r for r in read_records(Path(env["INGEST_STORAGE_URL"]))}
    # story-0 and its copy have one text: whichever a worker finished first is the canonical record
    twins = {articles[0], bad[3]}
    assert len(twins & set(records)) == 1
    canonical_url = (twins & set(records)).pop()
    assert sorted(set(records) - twins) == sorted(articles[1:])
    schema = record_schema()
    for n, url in enumerate(articles):
        r = records[canonical_url if n == 0 else url]
        jsonschema.validate(r, schema)
        assert r["final_url"] == r["url"] and r["status"] == 200 and r["source"] == "file"
        assert r["title"] == article_html(n).split("<title>")[1].split(" | ")[0]
        assert r["author"] == author_name(n)
        assert r["published"].startswith(f"2026-03-{(n % 27) + 1:02d}")
        assert r["language"] == "en"
        assert f"Paragraph 1 of story {n}:" in r["text"] and f"Paragraph 6 of story {n}:" in r["text"]
        assert 200 < r["word_count"] < 320  # six paragraphs of about 40 words
        assert r["schema_version"] == SCHEMA_VERSION
    assert len({r["id"] for r in records.values()}) == 25


def test_second_submission_fetches_nothing_again(workers, page_server, page_hits, tmp_path):
    """Submitting stored URLs again queues nothing and costs no request to the site."""
    env = workers.env
    urls = [f"{page_server}/articles/story-{n}.html" for n in range(30, 40)]
    first = json.loads(ingest("submit", *urls, "--json", env=env).stdout)
    _wait_for_batch(first["batch"], env)
    hits_after_first = _article_hits(page_hits)
    assert hits_after_first == 10

    second = json.loads(ingest("submit", *urls, "--json", env=env).stdout)
    assert (second["accepted"], second["duplicates"]) == (0, 10)
    stats = _wait_for_batch(second["batch"], env)
    assert stats["duplicate_reasons"] == {"seen_url": 10}
    time.sleep(0.5)
    assert _article_hits(page_hits) == hits_after_first


def test_submit_with_unreachable_state_store_exits_nonzero(ingest_env):
    """With Redis (the frontier) down, submit says so and exits 3; nothing is queued. (A broker outage
    alone does not stop submissions: URLs wait in the frontier until the workers dispatch them.)"""
    env = {
        **ingest_env,
        "INGEST_BROKER_URL": "redis://127.0.0.1:1/0",
        "INGEST_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = ingest("submit", "https://example.com/a", env=env, check=False)
    assert proc.returncode == 3
    assert "unreachable" in proc.stderr


def test_recrawl_of_unchanged_page_ends_not_modified_through_celery(ingest_env, tmp_path):
    """With INGEST_RECRAWL_TTL set, a forced re-submission sends the stored validators; the 304 is a
    duplicate with reason not_modified, and no second record is written."""
    env = {**ingest_env, "INGEST_RECRAWL_TTL": "3600"}
    workers = Workers(env, tmp_path / "recrawl-workers.log")
    try:
        with FaultServer("127.0.0.1") as server:
            url = server.url("/etag")
            first = json.loads(ingest("submit", url, "--json", env=env).stdout)
            assert _wait_for_batch(first["batch"], env)["stored"] == 1
            again = json.loads(ingest("submit", url, "--force", "--json", env=env).stdout)
            stats = _wait_for_batch(again["batch"], env)
            pages = [headers for path, headers in server.requests if path == "/etag"]
    finally:
        workers.stop()
    assert stats["duplicate_reasons"] == {"not_modified": 1}, (stats, workers.log())
    assert len(pages) == 2 and pages[1].get("if-none-match") == '"v1"'
    assert len(list(read_records(Path(env["INGEST_STORAGE_URL"])))) == 1
