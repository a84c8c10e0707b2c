import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

from worker.pipeline.store import INPROGRESS, JsonlStore, read_records


def _writer(directory: str, worker: int, n: int) -> None:
    store = JsonlStore(directory, rotate_bytes=20_000)
    for i in range(n):
        store.write({"id": f"{worker}-{i}", "text": "x" * (i % 700)})
    store.close()


def test_many_processes_write_every_record_exactly_once(tmp_path):
    """Four processes appending at once: every record is readable once, every line is whole JSON."""
    procs = [multiprocessing.Process(target=_writer, args=(str(tmp_path), w, 300)) for w in range(4)]
    [p.start() for p in procs]
    [p.join() for p in procs]
    ids = [r["id"] for r in read_records(tmp_path)]
    assert sorted(ids) == sorted(f"{w}-{i}" for w in range(4) for i in range(300))
    assert not list(tmp_path.rglob(f"*{INPROGRESS}"))


def test_open_part_file_is_invisible_to_readers(tmp_path):
    """Records in a part still being written are not in *.jsonl until it is published."""
    store = JsonlStore(tmp_path, rotate_seconds=3600)
    store.write({"id": "a"})
    assert list(read_records(tmp_path)) == []
    store.close()
    assert [r["id"] for r in read_records(tmp_path)] == ["a"]


def test_part_rotates_by_size(tmp_path):
    """A part is published once it passes rotate_bytes, so long-running workers' records appear."""
    store = JsonlStore(tmp_path, rotate_bytes=100)
    for i in range(5):
        store.write({"id": str(i), "pad": "y" * 80})
    assert len(list(read_records(tmp_path))) >= 4
    store.close()
    assert len(list(tmp_path.rglob("*.jsonl"))) == 5


def _killed_writer(directory: str, ready) -> None:
    store = JsonlStore(directory, rotate_seconds=3600)
    for i in range(50):
        store.write({"id": str(i)})
    # leave a torn last line, as a kill in the middle of a write would
    os.write(store._fd, b'{"id": "torn')
    ready.set()
    time.sleep(60)


def test_recover_publishes_a_killed_writers_part_without_the_torn_line(tmp_path):
    """After SIGKILL, recover() publishes the complete lines and drops the partial one."""
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_killed_writer, args=(str(tmp_path), ready))
    proc.start()
    assert ready.wait(30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    published = JsonlStore(tmp_path).recover() or list(tmp_path.rglob("*.jsonl"))
    assert published
    lines = Path(published[0]).read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [str(i) for i in range(50)]
