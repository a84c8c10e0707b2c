"""Records as JSON Lines in a directory, safe with many writer processes (the default backend).

Each writer process appends to its own part file, named for host, pid and start time, under a
``date=YYYY-MM-DD`` folder; while open it ends in ``.inprogress``, which readers ignore. A part is
published by an atomic rename once it is large or old enough, or when the process shuts down, so a
reader of ``*.jsonl`` / ``*.jsonl.gz`` never sees a partial line. A part left behind by a killed process
is cut back to its last complete record and published by ``recover()`` (run when a store opens and after
``ingest run``): the records it holds were written before their task was acknowledged.

With ``compress=True`` every record is written as its own gzip member (a valid multi-member ``.gz``
file): each ``write`` is still complete on disk when it returns, and recovery cuts at a member boundary.
Per-record members compress a little worse than one stream, which is the price of losing nothing.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

INPROGRESS = ".inprogress"
"""Suffix of a part file still being written; readers skip it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_")


def _gzip_complete_length(data: bytes, chunk: int = 1 << 16) -> int:
    """Bytes of ``data`` made of whole gzip members (a killed writer may leave half of the last one)."""
    view, end = memoryview(data), 0
    while end < len(data):
        d, pos = zlib.decompressobj(wbits=31), end
        while not d.eof and pos < len(data):
            piece = view[pos : pos + chunk]  # bounded pieces: unused_data stays small
            try:
                d.decompress(piece)
            except zlib.error:
                return end
            pos += len(piece)
        if not d.eof:
            return end
        end = pos - len(d.unused_data)
    return end


class JsonlStore:
    """Append records to per-process JSONL part files under ``directory``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        rotate_bytes: int = 64 * 1024 * 1024,
        rotate_seconds: float = 300.0,
        compress: bool = False,
        on_publish: Callable[[Path], None] | None = None,
    ) -> None:
        if rotate_bytes < 1:
            raise ValueError("rotate_bytes must be >= 1")
        if rotate_seconds <= 0:
            raise ValueError("rotate_seconds must be > 0")
        self.directory = Path(directory)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.compress = compress
        self.on_publish = on_publish
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
        if self.compress:
            line = gzip.compress(line, compresslevel=6, mtime=0)
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

    def read(self) -> Iterator[dict]:
        """Every published record, in file order (re-deliveries may repeat an id; see ``export``)."""
        return read_records(self.directory)

    def _open(self) -> None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        folder = self.directory / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        ext = ".jsonl.gz" if self.compress else ".jsonl"
        self._path = folder / f"part-{_host()}-{os.getpid()}-{stamp}{ext}{INPROGRESS}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._opened = time.monotonic()
        self._size = 0
        # an idle worker writes nothing that would trigger rotation: publish on a timer too, so readers
        # see every record within about rotate_seconds
        timer = threading.Timer(self.rotate_seconds, self._publish_if_current, args=(self._path,))
        timer.daemon = True
        timer.start()

    def _publish_if_current(self, path: Path) -> None:
        with self._lock:
            if self._fd is not None and self._path == path and self._pid == os.getpid():
                self._publish()

    def _publish(self) -> None:
        assert self._fd is not None and self._path is not None
        os.fsync(self._fd)
        os.close(self._fd)
        target = self._path.with_name(self._path.name.removesuffix(INPROGRESS))
        os.rename(self._path, target)
        self._fd, self._path = None, None
        if self.on_publish is not None:
            self.on_publish(target)

    def recover(self) -> list[Path]:
        """Publish part files of dead processes on this host, cut back to their last complete record."""
        published = []
        for path in sorted(self.directory.glob(f"date=*/part-{_host()}-*.jsonl*{INPROGRESS}")):
            try:
                pid = int(path.name.split("-")[-2])
            except ValueError:
                continue
            if pid == os.getpid() or _pid_alive(pid):
                continue
            data = path.read_bytes()
            if path.name.endswith(".gz" + INPROGRESS):
                keep_len = _gzip_complete_length(data)
            else:
                keep_len = data.rfind(b"\n") + 1
            if keep_len != len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(keep_len)
            target = path.with_name(path.name.removesuffix(INPROGRESS))
            if keep_len:
                os.rename(path, target)
                published.append(target)
            else:
                path.unlink()
        return published


def iter_lines(path: Path) -> Iterator[dict]:
    """The records of one published part file (plain or gzip)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_records(directory: str | os.PathLike[str]) -> Iterator[dict]:
    """Every published record under ``directory`` (``.jsonl`` and ``.jsonl.gz`` parts), in file order."""
    root = Path(directory)
    for path in sorted([*root.rglob("*.jsonl"), *root.rglob("*.jsonl.gz")]):
        yield from iter_lines(path)
