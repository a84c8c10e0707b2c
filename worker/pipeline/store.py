"""Store stage: records as JSON Lines in a directory, safe with many writer processes.

Each writer process appends to its own part file, named for host, pid and start time, under a
``date=YYYY-MM-DD`` folder; while open it ends in ``.jsonl.inprogress``, which readers ignore. A part is
published by an atomic rename to ``.jsonl`` once it is large or old enough, or when the process shuts
down, so a reader of ``*.jsonl`` never sees a partial line. A part left behind by a killed process is cut
back to its last complete line and published by ``recover()`` (run when a store opens and after
``ingest run``): the records it holds were written before their task was acknowledged.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

INPROGRESS = ".inprogress"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JsonlStore:
    """Append records to per-process JSONL part files under ``directory``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        rotate_bytes: int = 64 * 1024 * 1024,
        rotate_seconds: float = 300.0,
    ) -> None:
        if rotate_bytes < 1:
            raise ValueError("rotate_bytes must be >= 1")
        self.directory = Path(directory)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._size = 0
        self._pid = os.getpid()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.recover()

    def write(self, record: dict) -> None:
        """Append one record as one line; the line is complete on disk when this returns."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._pid != os.getpid():  # forked after opening: the part belongs to the parent
                self._fd, self._path, self._pid = None, None, os.getpid()
            if self._fd is not None and (
                self._size >= self.rotate_bytes or time.monotonic() - self._opened >= self.rotate_seconds
            ):
                self._publish()
            if self._fd is None:
                self._open()
            assert self._fd is not None
            view = memoryview(line)
            while view:  # one record, one write call in practice; loop only guards short writes
                view = view[os.write(self._fd, view) :]
            self._size += len(line)

    def close(self) -> None:
        """Publish the current part file, if any."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                self._publish()

    def _open(self) -> None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        folder = self.directory / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        host = socket.gethostname().replace(".", "_").replace("-", "_")
        self._path = folder / f"part-{host}-{os.getpid()}-{stamp}.jsonl{INPROGRESS}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._opened = time.monotonic()
        self._size = 0

    def _publish(self) -> None:
        assert self._fd is not None and self._path is not None
        os.fsync(self._fd)
        os.close(self._fd)
        os.rename(self._path, self._path.with_name(self._path.name.removesuffix(INPROGRESS)))
        self._fd, self._path = None, None

    def recover(self) -> list[Path]:
        """Publish part files of dead processes on this host, cut back to their last full line."""
        host = socket.gethostname().replace(".", "_").replace("-", "_")
        published = []
        for path in sorted(self.directory.glob(f"date=*/part-{host}-*.jsonl{INPROGRESS}")):
            try:
                pid = int(path.name.split("-")[-2])
            except ValueError:
                continue
            if pid == os.getpid() or _pid_alive(pid):
                continue
            data = path.read_bytes()
            keep = data[: data.rfind(b"\n") + 1]
            if keep != data:
                with open(path, "r+b") as fh:
                    fh.truncate(len(keep))
            target = path.with_name(path.name.removesuffix(INPROGRESS))
            if keep:
                os.rename(path, target)
                published.append(target)
            else:
                path.unlink()
        return published


def read_records(directory: str | os.PathLike[str]) -> Iterator[dict]:
    """Every published record under ``directory`` (``.jsonl`` and ``.jsonl.gz`` parts), in file order."""
    root = Path(directory)
    for path in sorted([*root.rglob("*.jsonl"), *root.rglob("*.jsonl.gz")]):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
