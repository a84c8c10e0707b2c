"""The `ingest` command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from tests.conftest import ingest
from worker.pipeline.store import read_records

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pages"


def _embedded_env(ingest_env: dict[str, str]) -> dict[str, str]:
    env = dict(ingest_env)
    del env["INGEST_BROKER_URL"]
    return env


def test_run_without_broker_uses_embedded_redis_and_stops_it(ingest_env, page_server):
    """With no INGEST_BROKER_URL, `ingest run` starts a private Redis, stores every page, and stops it."""
    env = _embedded_env(ingest_env)
    urls = [f"{page_server}/articles/story-{n}.html" for n in range(5)]
    proc = ingest("run", *urls, "--json", env=env)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["submitted"], summary["stored"], summary["pending"]) == (5, 5, 0)
    assert summary["broker"].startswith("redis://127.0.0.1:")
    assert len(list(read_records(env["INGEST_STORAGE_URL"]))) == 5
    try:
        redis.Redis.from_url(summary["broker"], socket_connect_timeout=1).ping()
        still_up = True
    except redis.ConnectionError:
        still_up = False
    assert not still_up, "the embedded Redis outlived `ingest run`"
    assert "stored" in proc.stderr and "records in" in proc.stderr


def test_embedded_state_persists_between_runs(ingest_env, page_server):
    """A second `ingest run` of the same URLs on the embedded Redis finds them seen (append-only file)."""
    env = _embedded_env(ingest_env)
    urls = [f"{page_server}/articles/story-{n}.html" for n in range(3)]
    ingest("run", *urls, env=env)
    second = json.loads(ingest("run", *urls, "--json", env=env).stdout.strip().splitlines()[-1])
    assert (second["stored"], second["duplicate"]) == (0, 3)
    assert second["duplicate_reasons"] == {"seen_url": 3}


def test_extract_prints_one_record_per_file(tmp_path):
    """`ingest extract` runs offline on local HTML (plain and .gz) and prints one JSON record per file."""
    import gzip

    page = EXAMPLES / "harbour-wind-farm.html"
    gz = tmp_path / "page.html.gz"
    gz.write_bytes(gzip.compress(page.read_bytes()))
    proc = ingest(
        "extract", str(page), str(gz), "--url", "https://example.com/harbour", env={"PATH": "/usr/bin"}
    )
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 2
    assert records[0]["text"] == records[1]["text"]
    assert records[0]["title"] == "Offshore wind farm approved for the northern harbour"
    assert records[0]["url"] == "https://example.com/harbour" and records[0]["language"] == "en"
    for furniture in ("Advertisement", "Subscribe", "PREV", "NEXT", "Read more", "cookies", "Comments 27"):
        assert furniture not in records[0]["text"]


def test_run_rejects_call_without_urls(ingest_env):
    """`ingest run` with nothing to do is a usage error, not a silent success."""
    proc = ingest("run", env=ingest_env, check=False)
    assert proc.returncode == 2 and "give URLs" in proc.stderr
