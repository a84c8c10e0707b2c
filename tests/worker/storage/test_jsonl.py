import gzip
import io
import json
import subprocess
import sys
import time

from tests.worker.storage.conftest import make_record
from worker.storage import export, open_storage
from worker.storage.jsonl import INPROGRESS, JsonlStore, _host


def test_directory_url_opens_the_jsonl_backend(tmp_path):
    """A plain path and a file:// URL both open the JSONL directory backend."""
    assert isinstance(open_storage(str(tmp_path / "a")), JsonlStore)
    assert isinstance(open_storage(f"file://{tmp_path / 'b'}"), JsonlStore)


def test_gzip_parts_are_valid_gzip_and_read_back(tmp_path):
    """With compress=True, published parts are .jsonl.gz files that gzip and read() both read whole."""
    store = JsonlStore(tmp_path, compress=True, rotate_bytes=2_000)
    for n in range(20):
        store.write(make_record(n))
    store.close()
    parts = sorted(tmp_path.rglob("*.jsonl.gz"))
    assert len(parts) > 1
    lines = [json.loads(line) for p in parts for line in gzip.open(p, "rt")]
    assert [r["id"] for r in lines] == [r["id"] for r in store.read()] == [f"{n:032x}" for n in range(20)]


def test_parts_live_under_date_partitions(tmp_path):
    """Published parts sit in date=YYYY-MM-DD folders."""
    store = JsonlStore(tmp_path)
    store.write(make_record(1))
    store.close()
    (part,) = tmp_path.rglob("*.jsonl")
    assert part.parent.name.startswith("date=") and len(part.parent.name) == len("date=2026-01-01")


def test_killed_gzip_writer_is_cut_back_to_its_last_whole_record(tmp_path):
    """A gzip part left by a dead process with half a record at its end is published with the whole ones."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    folder = tmp_path / "date=2026-01-01"
    folder.mkdir()
    members = [gzip.compress((json.dumps(make_record(n)) + "\n").encode()) for n in range(3)]
    torn = b"".join(members) + members[0][: len(members[0]) // 2]
    (folder / f"part-{_host()}-{pid}-20260101T000000000000.jsonl.gz{INPROGRESS}").write_bytes(torn)
    store = JsonlStore(tmp_path)
    assert [r["id"] for r in store.read()] == [f"{n:032x}" for n in range(3)]
    assert not list(tmp_path.rglob(f"*{INPROGRESS}"))


def test_idle_part_is_published_by_time_without_another_write(tmp_path):
    """An open part is published once rotate_seconds pass even if the worker writes nothing more."""
    store = JsonlStore(tmp_path, rotate_seconds=0.2)
    store.write(make_record(1))
    deadline = time.monotonic() + 20
    while not list(store.read()):
        assert time.monotonic() < deadline, "part never published"
        time.sleep(0.05)
    assert not list(tmp_path.rglob(f"*{INPROGRESS}"))


def test_same_id_written_twice_exports_once_newest_copy(tmp_path):
    """At-least-once: a record re-delivered (same id) into JSONL collapses to one line, the newest fetch."""
    store = JsonlStore(tmp_path)
    store.write(make_record(1, fetched_at="2026-03-01T08:00:00Z", title="old"))
    store.write(make_record(2))
    store.write(make_record(1, fetched_at="2026-03-02T08:00:00Z", title="new"))
    store.write(make_record(2))  # plain re-delivery: identical copy
    store.close()
    assert len(list(store.read())) == 4
    out = io.StringIO()
    assert export(store, out) == 2
    exported = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert exported[f"{1:032x}"]["title"] == "new"
