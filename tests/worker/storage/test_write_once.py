"""Exactly-once visible output: ``Pipeline.write_once`` with a real JSONL store and the real Redis state."""

import uuid

import pytest

from ingest_core.state import StateStore
from tests.worker.storage.conftest import make_record
from worker.runner import Job, Pipeline
from worker.storage.jsonl import JsonlStore, read_records


class _Bare:
    """Just what write_once uses of a Pipeline: store, state and the retry bound."""

    write_once = Pipeline.write_once

    def __init__(self, store, state) -> None:
        self.store, self.state, self.storage_retry_max = store, state, 5.0


@pytest.fixture
def bare(redis_client, tmp_path):
    state = StateStore(redis_client, prefix=f"wo{uuid.uuid4().hex[:6]}")
    store = JsonlStore(tmp_path / "records", rotate_seconds=3600)
    yield _Bare(store, state)
    store.close()


def _job(n: int, token: str = "1.0.1") -> Job:
    return Job(url=f"https://news.example/articles/{n}", id=f"{n:032x}", token=token, batch="b")


def test_second_delivery_of_a_claim_does_not_write_again(bare, tmp_path):
    """The same claim written twice (a task delivered again after its worker died) leaves one line."""
    record = make_record(1)
    bare.write_once(_job(1), record)
    bare.write_once(_job(1), record)
    bare.store.close()
    assert [r["id"] for r in read_records(tmp_path / "records")] == [record["id"]]


def test_a_new_claim_writes_again_and_a_cut_line_is_written_again(bare, tmp_path):
    """A new claim (recrawl, --force) writes a second copy on purpose; a noted line that is not whole any
    more (cut back after a failed write) does not count as written."""
    bare.write_once(_job(2), make_record(2))
    bare.write_once(_job(2, token="2.0.1"), make_record(2))
    (part,) = (tmp_path / "records").rglob("*.inprogress")
    assert part.read_text().count(f'"id":"{2:032x}"') == 2
    bare.write_once(_job(3), make_record(3))
    where = bare.state.written_at(f"{3:032x}", "1.0.1")
    assert where is not None
    bare.store.close()  # the writer goes; its last line was torn and cut back when the part was published
    (published,) = (tmp_path / "records").rglob("*.jsonl")
    with open(published, "r+b") as fh:
        fh.truncate(int(where.split(":")[-2]))
    bare.write_once(_job(3), make_record(3))
    bare.store.close()
    ids = [r["id"] for r in read_records(tmp_path / "records")]
    assert ids.count(f"{3:032x}") == 1


def test_the_note_is_dropped_when_the_url_ends(bare):
    """Once the URL is terminal its write note is removed (no Redis left behind per stored URL)."""
    bare.write_once(_job(4), make_record(4))
    assert bare.state.written_at(f"{4:032x}", "1.0.1")
    bare.state.forget_written(f"{4:032x}")
    assert bare.state.written_at(f"{4:032x}", "1.0.1") is None
    assert bare.state.r.hlen(bare.state.key("written")) == 0
