import io

from rich.console import Console

from ingest_core.state import StateStore, summarize
from worker.ops.watch import Snapshot, render, watch


def _text(renderable) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_rates_are_the_change_per_second_between_snapshots():
    """Stored going from 10 to 30 over two seconds shows 10.0 per second."""
    before = Snapshot(100.0, summarize({"submitted": 40, "stored": 10}), {"fetch": 5})
    after = Snapshot(102.0, summarize({"submitted": 40, "stored": 30, "failed:http_404": 1, "failed": 1}))
    rows = {
        line.split("│")[1].strip(): line.split("│")[2:4]
        for line in _text(render(after, before)).splitlines()
        if line.count("│") >= 4
    }
    assert [c.strip() for c in rows["stored"]] == ["30", "10.0"]
    assert [c.strip() for c in rows["submitted"]] == ["40", "0.0"]
    lines = _text(render(after, before)).splitlines()
    assert any("failed" in line and "http_404: 1" in line for line in lines)


def test_watch_draws_live_tables_from_redis(redis_client, redis_url):
    """stats --watch's loop reads the state store and the broker and draws the table."""
    state = StateStore(redis_client)
    redis_client.hset("ingest:counters", mapping={"submitted": 3, "stored": 2})
    out = io.StringIO()
    watch(
        state, redis_url, interval=0.01, iterations=2, console=Console(file=out, width=120, color_system=None)
    )
    text = out.getvalue()
    assert "ingest stats" in text and "pending" in text and "fetch" in text
