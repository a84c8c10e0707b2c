"""JSONL parts under faults: dead writers anywhere, full disks, failed renames, torn lines, durability."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest_core.errors import StorageUnavailable
from tests.conftest import REPO, ingest
from tests.reliability._storage_harness import need_root
from tests.worker.storage.conftest import make_record
from worker.storage import export, read_problems
from worker.storage import jsonl as jsonl_module
from worker.storage.jsonl import INPROGRESS, JsonlStore, Location, read_records


def _lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path} ends with a partial line"
    return [json.loads(line) for line in data.splitlines()]


def _orphan(folder: Path, name: str, records: range, tail: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"".join((json.dumps(make_record(n)) + "\n").encode() for n in records) + tail)
    return path


def test_unlocked_part_is_published_whatever_host_or_pid_its_name_says(tmp_path):
    """Parts named for another host, or for this very PID (a container's PID 1 again), are published once
    nobody holds their lock, each cut back to its last whole line."""
    folder = tmp_path / "date=2026-01-01"
    _orphan(
        folder, f"part-other_host-{os.getpid()}-20260101T000000000000.jsonl{INPROGRESS}", range(3), b'{"id'
    )
    _orphan(folder, "part-old_container-1-20260101T000000000001.jsonl" + INPROGRESS, range(3, 5))
    JsonlStore(tmp_path)
    assert not list(tmp_path.rglob(f"*{INPROGRESS}"))
    assert sorted(r["id"] for r in read_records(tmp_path)) == [f"{n:032x}" for n in range(5)]
    for part in tmp_path.rglob("*.jsonl"):
        _lines(part)


_WRITER = """
import sys, time
from worker.storage.jsonl import JsonlStore
store = JsonlStore(sys.argv[1], rotate_seconds=3600)
for n in range(4):
    store.write({"id": str(n), "fetched_at": "2026-01-01T00:00:00Z"})
print("ready", flush=True)
time.sleep(600)
"""


def test_live_writers_part_is_left_alone_and_published_after_kill_9_under_another_hostname(tmp_path):
    """A writer in its own UTS namespace (another hostname) holds its part; a sweep leaves it while it
    lives, and publishes it, whole, once the writer is SIGKILLed."""
    need_root("a UTS namespace")  # a failure, not a skip, in CI
    proc = subprocess.Popen(
        ["unshare", "-u", "sh", "-c", 'hostname far-away-host && exec "$0" -c "$1" "$2"',
         sys.executable, _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        (part,) = tmp_path.rglob(f"*{INPROGRESS}")
        assert "far_away_host" in part.name
        assert JsonlStore(tmp_path).recover() == []  # alive: its lock is held
        assert part.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    published = JsonlStore(tmp_path).recover() or list(tmp_path.rglob("*.jsonl"))
    assert [r["id"] for r in _lines(Path(published[0]))] == ["0", "1", "2", "3"]
    assert not list(tmp_path.rglob(f"*{INPROGRESS}"))


def test_failed_publish_keeps_the_part_and_never_closes_another_file(tmp_path, monkeypatch):
    """A rename that fails (EROFS) leaves the part open and ours; no unrelated file that reused a closed
    descriptor number is written to or closed, and every record is published once the rename works."""
    store = JsonlStore(tmp_path, rotate_bytes=1)
    real_rename = os.rename
    failures = iter([OSError(errno.EROFS, "Read-only file system")])

    def flaky_rename(src, dst):
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return real_rename(src, dst)

    monkeypatch.setattr(jsonl_module.os, "rename", flaky_rename)
    store.write(make_record(1))
    store.write(make_record(2))  # rotation: the rename fails, the record goes to the same part
    bystander = tmp_path / "bystander.txt"
    fd = os.open(bystander, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        store.write(make_record(3))
        store.close()
        os.fstat(fd)  # still open: nobody closed it behind our back
        assert bystander.read_bytes() == b""
    finally:
        os.close(fd)
    assert sorted(r["id"] for r in store.read()) == [f"{n:032x}" for n in (1, 2, 3)]
    assert not list(tmp_path.rglob(f"*{INPROGRESS}"))


def test_short_write_then_enospc_is_cut_back_and_transient(tmp_path, monkeypatch):
    """A write that lands half a line and then hits ENOSPC leaves no fragment: the part is cut back to its
    last whole line, the error is StorageUnavailable, and the next record is appended cleanly."""
    store = JsonlStore(tmp_path, rotate_seconds=3600)
    store.write(make_record(0))
    real_write = os.write
    calls = {"n": 0}

    def short_then_full(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jsonl_module.os, "write", short_then_full)
    with pytest.raises(StorageUnavailable) as caught:
        store.write(make_record(1))
    assert caught.value.reason == "storage_unavailable" and "ENOSPC" in caught.value.detail
    monkeypatch.setattr(jsonl_module.os, "write", real_write)
    (part,) = tmp_path.rglob(f"*{INPROGRESS}")
    assert [r["id"] for r in _lines(part)] == [f"{0:032x}"]
    store.write(make_record(2))
    store.close()
    assert [r["id"] for r in store.read()] == [f"{0:032x}", f"{2:032x}"]


def test_part_whose_only_write_failed_is_removed_not_published_empty(tmp_path, monkeypatch):
    """A new part whose first write hit ENOSPC holds nothing: closing the store removes it, unpublished."""

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    store = JsonlStore(tmp_path, rotate_seconds=3600)
    monkeypatch.setattr(jsonl_module.os, "write", full)
    with pytest.raises(StorageUnavailable):
        store.write(make_record(1))
    store.close()
    assert not [p for p in tmp_path.rglob("part-*")]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB tmpfs under the test's tmp dir (root only), unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("INGEST_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr!r}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr!r}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _big(n: int) -> dict:
    return {**make_record(n), "text": f"story {n} " * 400}  # about 3.5 KB a line


def test_full_tmpfs_fails_whole_records_and_takes_them_once_space_is_freed(small_tmpfs):
    """On a real tmpfs that fills: every failed write is StorageUnavailable with nothing left of it on
    disk; after space is freed the same records go in, each once, every line whole."""
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (200 * 1024))
    store = JsonlStore(small_tmpfs / "records", rotate_seconds=3600)
    written, refused = [], []
    for n in range(60):
        try:
            store.write(_big(n))
            written.append(n)
        except StorageUnavailable as exc:
            assert "ENOSPC" in exc.detail
            refused.append(n)
    assert written and refused, (written, refused)
    (part,) = (small_tmpfs / "records").rglob(f"*{INPROGRESS}")
    assert [r["id"] for r in _lines(part)] == [f"{n:032x}" for n in written]
    filler.unlink()
    for n in refused:
        store.write(_big(n))
    store.close()
    ids = [r["id"] for r in read_records(small_tmpfs / "records")]
    assert sorted(ids) == [f"{n:032x}" for n in range(60)]


def test_torn_last_line_is_reported_by_read_and_export_not_a_crash(tmp_path):
    """A published part ending in half a line: read() yields the whole records and notes the torn one;
    `ingest export` exports the rest, says which part and byte, and exits 0."""
    folder = tmp_path / "records" / "date=2026-01-01"
    _orphan(folder, "part-h-1-20260101T000000000000.jsonl", range(2), b'{"id": "0000')
    store = JsonlStore(tmp_path / "records")
    assert [r["id"] for r in store.read()] == [f"{0:032x}", f"{1:032x}"]
    (problem,) = read_problems(store)
    assert "torn last line" in problem and "part-h-1-" in problem
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update({"INGEST_STORAGE_URL": str(tmp_path / "records"), "PYTHONPATH": str(REPO)})
    out = tmp_path / "all.jsonl"
    proc = ingest("export", "--to", str(out), env=env)
    assert len(out.read_text().splitlines()) == 2
    assert "torn last line" in proc.stderr and "Traceback" not in proc.stderr


def test_holds_finds_a_record_where_it_was_written_open_or_published(tmp_path):
    """The location a write reports holds that record (open and after publishing), and no other id."""
    store = JsonlStore(tmp_path, rotate_seconds=3600)
    seen: list[Location] = []
    store.write(make_record(0))
    where = store.write(make_record(1), before=seen.append)
    assert seen == [where] and where.offset > 0
    assert store.holds(str(where), f"{1:032x}")
    assert not store.holds(str(where), f"{0:032x}")
    store.close()
    assert store.holds(str(where), f"{1:032x}")
    (part,) = tmp_path.rglob("*.jsonl")
    with open(part, "r+b") as fh:
        fh.truncate(where.offset + 10)  # as if the line had been torn and cut back
    assert not store.holds(str(where), f"{1:032x}")


def test_forked_child_does_not_keep_the_parents_part_locked(tmp_path):
    """A child forked while the parent has a part open does not hold its lock: once the parent lets go
    (dies), a sweep publishes the part even though the child still lives."""
    store = JsonlStore(tmp_path, rotate_seconds=3600)
    store.write(make_record(0))
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child (its at-fork hooks have run): say so, then live on for a while
        os.write(ready_w, b"x")
        time.sleep(30)
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        assert store._fd is not None
        os.close(store._fd)  # the parent's own descriptor goes, as at its death
        store._fd = store._path = None
        JsonlStore(tmp_path)  # opening a store sweeps
        assert not list(tmp_path.rglob(f"*{INPROGRESS}"))
        assert [r["id"] for r in read_records(tmp_path)] == [f"{0:032x}"]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)


def test_fsync_record_flushes_each_line_before_write_returns(tmp_path, monkeypatch):
    """With fsync="record", write() returns only after an fdatasync that covers the record's line."""
    synced: list[int] = []
    real = os.fdatasync

    def spy(fd):
        real(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(jsonl_module.os, "fdatasync", spy)
    store = JsonlStore(tmp_path, rotate_seconds=3600)
    for n in range(3):
        where = store.write(make_record(n))
        assert synced and synced[-1] >= where.offset + where.length
    assert len(synced) == 3
    off = JsonlStore(tmp_path / "off", fsync="off")
    off.write(make_record(9))
    assert len(synced) == 3
    store.close()
    off.close()


def test_export_counts_a_record_once_even_when_a_torn_copy_exists(tmp_path):
    """A torn copy of a record next to its whole copy does not change the export (one line per id)."""
    folder = tmp_path / "date=2026-01-01"
    _orphan(folder, "part-a-1-20260101T000000000000.jsonl", range(3))
    _orphan(folder, "part-b-1-20260101T000000000000.jsonl", range(2, 3), b'{"id": "x')
    store = JsonlStore(tmp_path)
    out = tmp_path / "out.jsonl"
    with open(out, "w") as fh:
        assert export(store, fh) == 3
    assert read_problems(store)
