"""``ingest health`` finds this host's Celery workers by their node names."""

from __future__ import annotations

from worker.ops.health import local_worker_nodenames


def _proc(tmp_path, pid: int, argv: list[str]) -> None:
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_worker_node_names_come_from_command_lines(tmp_path):
    """Each `celery ... worker -n NAME@%h` process gives NAME@<hostname>; other processes are ignored."""
    base = ["/opt/ingest/bin/python3", "-m", "celery", "-A", "worker.celery_app", "worker"]
    _proc(tmp_path, 1, ["/opt/ingest/bin/python3", "/opt/ingest/bin/ingest", "worker", "--queues", "fetch"])
    _proc(tmp_path, 7, [*base, "-Q", "fetch", "-P", "threads", "-n", "fetch-1@%h"])
    _proc(tmp_path, 9, [*base, "-Q", "process", "--hostname", "process-1@%h"])
    _proc(tmp_path, 11, ["sleep", "-n", "x"])
    assert local_worker_nodenames(tmp_path, "box") == ["fetch-1@box", "process-1@box"]


def test_no_worker_processes_means_no_names(tmp_path):
    """A container whose worker never started has no node names (so `health --worker` fails)."""
    _proc(tmp_path, 1, ["python3", "-m", "http.server"])
    assert local_worker_nodenames(tmp_path, "box") == []
