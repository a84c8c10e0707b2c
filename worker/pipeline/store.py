"""Store stage: the JSONL directory backend, which lives in ``worker.storage.jsonl`` (re-exported here)."""

from worker.storage.jsonl import INPROGRESS, JsonlStore, read_records

__all__ = ["INPROGRESS", "JsonlStore", "read_records"]
