"""A new user's journey through the installed ``ingest`` command, with nothing configured.

No broker and no Redis are named: every command uses the embedded Redis of its data directory, as on a
fresh machine. Pages come from a loopback server that counts requests, so "nothing fetched twice" is
checked where it happens. Each test has its own working directory (``./data`` is per test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO, article_html

INGEST = [sys.executable, "-m", "worker.cli"]


class _Site(BaseHTTPRequestHandler):
    """/a/<n>: a unique article; /slow/<n>: the same after a pause; anything else 404. Counts requests."""

    hits: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        with self.lock:
            self.hits[self.path] = self.hits.get(self.path, 0) + 1
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] in ("a", "slow") and parts[1].isdigit():
            if parts[0] == "slow":
                time.sleep(0.3)
            body = article_html(int(parts[1])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        else:
            body = b"<html><body>not here</body></html>"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site() -> Iterator[str]:
    _Site.hits = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A user's environment: no INGEST_* at all (embedded default), a working directory of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["PYTHONPATH"] = str(REPO)
    env["HOME"] = str(tmp_path)
    return env


def ingest(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 180, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*INGEST, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, input=stdin
    )


LOCAL = ("--allow-private-networks", "-s", "HOST_INTERVAL=0.05")
"""Our own loopback site: allowed, and a short politeness interval."""


def _urls(site: str, n: int, kind: str = "a", start: int = 0) -> list[str]:
    return [f"{site}/{kind}/{i}" for i in range(start, start + n)]


def _no_embedded_redis_left(data: Path) -> bool:
    users = list((data / "redis" / "users").glob("*")) if (data / "redis" / "users").exists() else []
    return not users and not (data / "redis" / "redis.url").exists()


def test_run_then_read_failures_and_stats_after_it(site, home, tmp_path):
    """After `ingest run`, `failures` and `stats` work (rc 0) and list the 404; nothing is left running."""
    urls = [*_urls(site, 3), f"{site}/missing", "ftp://example.com/x"]
    run = ingest("run", *LOCAL, *urls, env=home, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "failed:http_404" in run.stderr and f"{site}/missing" in run.stderr  # examples in the summary
    fails = [json.loads(line) for line in (tmp_path / "data" / "failures.jsonl").read_text().splitlines()]
    assert {(f["url"], f["state"], f["reason"]) for f in fails} == {
        (f"{site}/missing", "failed", "http_404"),
        ("ftp://example.com/x", "skipped", "unsupported_scheme"),
    }
    listed = ingest("failures", "--reason", "http_404", env=home, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"{site}/missing" in listed.stdout
    stats = ingest("stats", "--json", env=home, cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    s = json.loads(stats.stdout)
    assert (s["stored"], s["failed"], s["skipped"], s["pending"]) == (3, 1, 1, 0)
    assert _no_embedded_redis_left(tmp_path / "data")


def test_interrupted_run_resumes_with_the_same_command_fetching_nothing_twice(site, home, tmp_path):
    """SIGINT mid-run prints a summary and exits 130; the same command again finishes every URL, each page
    fetched once and each record id stored once."""
    urls = _urls(site, 40, "slow")
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    args = [*INGEST, "run", "-f", "urls.txt", "--allow-private-networks", "-s", "HOST_INTERVAL=0.2"]
    first = subprocess.Popen(args, env=home, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while sum(n for p, n in _Site.hits.items() if p.startswith("/slow/")) < 5:  # some pages done
        assert time.monotonic() < deadline, "the first run fetched nothing"
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert "run the same command again" in err
    fetched_first = {p for p in _Site.hits if p.startswith("/slow/")}
    assert 0 < len(fetched_first) < 40

    second = ingest(*args[len(INGEST) :], env=home, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    pages = {p: n for p, n in _Site.hits.items() if p.startswith("/slow/")}
    assert len(pages) == 40 and max(pages.values()) == 1, pages  # every page, none twice
    exported = ingest("export", "--to", "-", env=home, cwd=tmp_path)
    ids = [json.loads(line)["id"] for line in exported.stdout.splitlines()]
    assert len(ids) == len(set(ids)) == 40
    raw = [
        json.loads(line)["id"]
        for part in (tmp_path / "data" / "records").rglob("*.jsonl")
        for line in part.read_text().splitlines()
    ]
    assert sorted(raw) == sorted(ids)  # each id once in the raw parts too
    s = json.loads(ingest("stats", "--json", env=home, cwd=tmp_path).stdout)
    assert (s["stored"], s["pending"]) == (40, 0)


def test_cancel_ends_pending_urls_as_skipped_cancelled(site, home, tmp_path):
    """`ingest cancel --batch` ends what a submit queued (no worker ran) and the counts add up."""
    sub = ingest("submit", "--json", *_urls(site, 5), env=home, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    batch = json.loads(sub.stdout)["batch"]
    cancel = ingest("cancel", "--batch", batch, "--json", env=home, cwd=tmp_path)
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout)["cancelled"] == 5
    s = json.loads(ingest("stats", "--json", "--batch", batch, env=home, cwd=tmp_path).stdout)
    assert (s["submitted"], s["skipped_reasons"], s["pending"]) == (5, {"cancelled": 5}, 0)
    assert s["frontier"]["waiting"] == 0
    unknown = ingest("stats", "--batch", "no-such-batch", env=home, cwd=tmp_path)
    assert unknown.returncode != 0 and "no batch" in unknown.stderr


def test_two_runs_in_one_data_directory_both_finish(site, home, tmp_path):
    """Two `ingest run` at once share one embedded Redis; both exit 0 with their own URLs stored."""
    procs = [
        subprocess.Popen(
            [*INGEST, "run", "--json", *LOCAL, *_urls(site, 6, kind, start)],
            env=home,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind, start in (("a", 0), ("slow", 100))  # distinct texts: no content duplicates
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out)["stored"] == 6
    assert _no_embedded_redis_left(tmp_path / "data")


def test_output_flag_writes_the_runs_records_as_jsonl(site, home, tmp_path):
    """`ingest run -o out.jsonl` writes one record per stored URL of the run."""
    run = ingest("run", *LOCAL, "-o", "out.jsonl", *_urls(site, 3), env=home, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["url"] for r in records) == sorted(_urls(site, 3))


def test_version_and_short_help(home, tmp_path):
    """`--version` names the version; `-h` works on the group and on a subcommand."""
    version = ingest("--version", env=home, cwd=tmp_path)
    assert version.returncode == 0 and "version" in version.stdout
    assert ingest("-h", env=home, cwd=tmp_path).returncode == 0
    assert "--output" in ingest("run", "-h", env=home, cwd=tmp_path).stdout


def test_unresolvable_host_fails_fast_as_dns_error(home, tmp_path):
    """A name that does not resolve ends failed:dns_error quickly, for the page and its robots.txt."""
    t0 = time.monotonic()
    run = ingest("run", "--json", "https://no-such-host.invalid/news/1", env=home, cwd=tmp_path, timeout=90)
    elapsed = time.monotonic() - t0
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["failed_reasons"] == {"dns_error": 1}
    assert elapsed < 60, f"took {elapsed:.0f}s"  # generous bound: the quick retries are seconds


def test_settings_from_set_flag_and_from_a_file(site, home, tmp_path):
    """`--config FILE` and `-s NAME=VALUE` set any setting, before or after the subcommand; flag > file."""
    (tmp_path / "ingest.toml").write_text("INGEST_MIN_WORDS = 100000\nallow_private_networks = true\n")
    by_file = ingest("--config", "ingest.toml", "run", "--json", f"{site}/a/1", env=home, cwd=tmp_path)
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)["skipped_reasons"] == {"too_short": 1}
    flag_wins = ingest(
        "run", "--config", "ingest.toml", "-s", "MIN_WORDS=5", "--json", f"{site}/a/2", env=home, cwd=tmp_path
    )
    assert flag_wins.returncode == 0, flag_wins.stderr
    assert json.loads(flag_wins.stdout)["stored"] == 1
    bad = ingest("run", "-s", "NO_SUCH_SETTING=1", "ftp://x/y", env=home, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown setting" in bad.stderr
