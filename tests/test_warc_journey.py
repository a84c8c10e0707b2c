"""``ingest run --warc`` on a bare machine: embedded default, no INGEST_* set, a working directory of its own.

The WARCs are written here with warcio from the fixture pages; the page server counts requests, so "a WARC
page is not fetched" and "a WARC duplicate of a fetched page is deduplicated against it" are checked where
they happen.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.producers.test_warc import page, write_warc
from tests.test_journey import LOCAL, _Site, ingest
from tests.test_journey import home as home  # noqa: F401  (fixtures)
from tests.test_journey import site as site  # noqa: F401


def _records(cwd: Path) -> list[dict]:
    return [
        json.loads(line)
        for part in sorted((cwd / "data" / "records").rglob("*.jsonl"))
        for line in part.read_text().splitlines()
    ]


def test_run_warc_stores_its_pages_and_counts_the_rest(home, tmp_path):  # noqa: F811
    warc = tmp_path / "crawl.warc.gz"
    warc.write_bytes(
        write_warc(
            [
                page(1),
                ("request", "https://news.example.com/a/1", b"", "", ""),
                page(2),
                (
                    "response",
                    "https://news.example.com/gone",
                    "<html>gone</html>",
                    "404 Not Found",
                    "text/html",
                ),
                page(3),
            ]
        )
    )
    done = ingest("run", "--warc", str(warc), "--json", env=home, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["stored"] == 3 and summary["pending"] == 0
    assert summary["skipped_reasons"] == {"http_404": 1, "warc_request": 1}
    records = _records(tmp_path)
    assert sorted(r["url"] for r in records) == [f"https://news.example.com/a/{n}" for n in (1, 2, 3)]
    assert {r["source"] for r in records} == {"warc:crawl.warc.gz"}
    assert {r["fetched_at"] for r in records} == {"2026-03-10T12:00:00Z"}
    assert all("Paragraph 3 of story" in r["text"] for r in records)
    # the same archive again: every page is a seen URL, nothing stored twice
    again = ingest("run", "--warc", str(warc), "--json", env=home, cwd=tmp_path, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["duplicate_reasons"] == {"seen_url": 3}
    assert len(_records(tmp_path)) == 3


def test_a_warc_of_already_fetched_pages_is_deduplicated_against_them(site, home, tmp_path):  # noqa: F811
    fetched = ingest("run", *LOCAL, f"{site}/a/1", f"{site}/a/2", "--json", env=home, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    assert json.loads(fetched.stdout)["stored"] == 2
    hits = dict(_Site.hits)
    # the same URLs (seen), the same text under another URL (same_text), one new page, all in a list file
    warc = tmp_path / "copies.warc"
    warc.write_bytes(
        write_warc(
            [page(1, f"{site}/a/1"), page(2, f"{site}/a/2"), page(1, f"{site}/copy/1"), page(5)], gz=False
        )
    )
    listed = tmp_path / "warcs.txt"
    listed.write_text(f"# one archive\n{warc}\n")
    done = ingest("run", *LOCAL, "--warc-list", str(listed), "--json", env=home, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["duplicate_reasons"] == {"same_text": 1, "seen_url": 2}
    assert summary["stored"] == 1
    assert _Site.hits == hits  # nothing fetched for a WARC page
    stored = sorted(r["url"] for r in _records(tmp_path))
    assert stored == [f"{site}/a/1", f"{site}/a/2", "https://news.example.com/a/5"]


def test_submit_warc_queues_pages_for_processing_only_and_a_run_finishes_them(home, tmp_path):  # noqa: F811
    warc = tmp_path / "x.warc.gz"
    warc.write_bytes(write_warc([page(1), page(2), ("request", "https://news.example.com/a/1", b"", "", "")]))
    sub = ingest("submit", "--warc", str(warc), "--json", env=home, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr[-3000:]
    assert json.loads(sub.stdout)["accepted"] == 2
    assert "skipped:warc_request 1" in sub.stderr
    stats = json.loads(ingest("stats", "--json", env=home, cwd=tmp_path).stdout)
    assert stats["queues"]["process"] == 2 and stats["queues"]["fetch"] == 0
    assert stats["frontier"]["processing"] == 2 and stats["frontier"]["waiting"] == 0
    # the same archive in a run: both pages are adopted (not queued twice) and the run waits for them
    done = ingest("run", "--warc", str(warc), "--json", env=home, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["stored"] == 2 and summary["resumed"] == 2 and summary["pending"] == 0
    assert sorted(r["url"] for r in _records(tmp_path)) == [f"https://news.example.com/a/{n}" for n in (1, 2)]
