"""Durability: under the default ``INGEST_STORAGE_FSYNC=record`` no URL is counted stored before its record
is on disk: its line flushed (fdatasync/fsync of the part) and the part's name flushed in its folder."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from ingest_core.settings import DEFAULT_STORAGE_FSYNC, Settings
from worker.runner import Pipeline
from worker.storage import jsonl as jsonl_module


class DiskSpy:
    """What has reached the disk, as far as this process has asked: synced sizes per file (by inode), and
    the names a synced folder held at its fsync."""

    def __init__(self) -> None:
        self.synced: dict[tuple[int, int], int] = {}
        self.names: dict[Path, set[str]] = {}

    def record(self, fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            folder = Path(os.readlink(f"/proc/self/fd/{fd}"))
            self.names.setdefault(folder, set()).update(os.listdir(folder))
        else:
            key = (st.st_dev, st.st_ino)
            self.synced[key] = max(self.synced.get(key, 0), st.st_size)

    def durable(self, records: Path, record_id: str) -> bool:
        """True when a part holds this id in a line that was synced, under a name its folder synced."""
        needle = f'"id":"{record_id}"'.encode()
        for part in records.rglob("part-*"):
            data = part.read_bytes()
            at = data.find(needle)
            if at < 0:
                continue
            end = data.index(b"\n", at) + 1
            st = part.stat()
            if self.synced.get((st.st_dev, st.st_ino), 0) >= end and part.name in self.names.get(
                part.parent, set()
            ):
                return True
        return False


@pytest.fixture
def pipeline(redis_url: str, redis_client, tmp_path: Path, request):
    s = Settings.from_env(
        {},
        storage_fsync=getattr(request, "param", DEFAULT_STORAGE_FSYNC),
        redis_url=redis_url,
        storage_url=str(tmp_path / "records"),
        allow_private_networks=True,
        host_interval=0,
        key_prefix=f"dur{uuid.uuid4().hex[:6]}",
        rotate_seconds=3600,
    )
    p = Pipeline.from_settings(s)
    yield p
    p.store.close()


def _durable_at_finish(pipeline, records: Path, monkeypatch) -> dict[str, bool]:
    """Spy on syncs; for every URL counted stored, whether its record was durable at that moment."""
    spy = DiskSpy()
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def synced(fd: int, _real=real) -> None:
            _real(fd)
            spy.record(fd)

        monkeypatch.setattr(jsonl_module.os, name, synced)
    seen: dict[str, bool] = {}
    finish = pipeline.state.finish

    def checking_finish(url_id, token, state, *args, **kwargs):
        if state == "stored":
            seen[url_id] = spy.durable(records, url_id)
        return finish(url_id, token, state, *args, **kwargs)

    monkeypatch.setattr(pipeline.state, "finish", checking_finish)
    return seen


def test_no_url_counts_stored_before_its_record_is_durable(pipeline, page_server, tmp_path, monkeypatch):
    """Default policy: each URL's finish(stored) comes only after its line and its part's name are flushed."""
    assert DEFAULT_STORAGE_FSYNC == "record"
    seen = _durable_at_finish(pipeline, tmp_path / "records", monkeypatch)
    outcomes = [pipeline.run_one(f"{page_server}/articles/story-{n}.html") for n in range(8)]
    assert [o.state for o in outcomes] == ["stored"] * 8, outcomes
    assert len(seen) == 8 and all(seen.values()), seen


@pytest.mark.parametrize("pipeline", ["off"], indirect=True)
def test_with_fsync_off_urls_count_stored_before_the_disk_has_them(
    pipeline, page_server, tmp_path, monkeypatch
):
    """``off`` is what it says: a URL is counted stored while its record is only in the page cache (the
    check above would catch a default that did this)."""
    seen = _durable_at_finish(pipeline, tmp_path / "records", monkeypatch)
    outcomes = [pipeline.run_one(f"{page_server}/articles/story-{n}.html") for n in range(3)]
    assert [o.state for o in outcomes] == ["stored"] * 3, outcomes
    assert len(seen) == 3 and not any(seen.values()), seen
