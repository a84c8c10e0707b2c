"""Records as JSON Lines in a directory, safe with many writer processes on many hosts (the default backend).

**Ownership by lock.** Each writer appends to its own part file under a ``date=YYYY-MM-DD`` folder, named
``part-<host>-<pid>-<time>-<random>.jsonl.inprogress`` (host and pid are for people, nothing compares
them), and holds an exclusive ``flock`` on it for as long as it writes. Whoever finds an ``.inprogress``
part whose lock is free (a store opening, a rotation, ``ingest export``) owns it: it cuts the part back
to its last complete record and publishes it. The kernel drops a dead process's locks, so a writer
killed in a container that came back with the same PID, or under a new hostname, is no different from
any other dead writer. (On NFS, Linux maps ``flock`` to byte-range locks the server keeps.)

**Whole lines or nothing.** A part is published by an atomic rename, so readers of ``*.jsonl`` /
``*.jsonl.gz`` never see a partial line; a write that fails or comes up short (ENOSPC, EIO) is cut back
to the last complete line before the error (``StorageUnavailable``, transient) leaves ``write``.
Readers that still meet a torn or unreadable line (a part from elsewhere) skip it and report it in
``problems`` instead of failing the whole read.

**Durability** (``fsync``): with ``"record"`` (the default) a record's line is flushed to disk
(``fdatasync``) before ``write`` returns, and the part's folder is flushed when the part is created and
published, so a record counted stored survives a machine crash. With ``"off"`` the OS writes it back when
it likes: a killed process loses nothing (the page cache is the kernel's), a machine crash may.

With ``compress=True`` every record is its own gzip member (a valid multi-member ``.gz`` file), so each
``write`` is still whole on disk when it returns and recovery cuts at a member boundary.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import logging
import os
import secrets
import socket
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ingest_core.errors import StorageUnavailable

log = logging.getLogger(__name__)

INPROGRESS = ".inprogress"
"""Suffix of a part file still being written; readers skip it."""

FSYNC_POLICIES = ("record", "off")
"""When a write is durable: ``record`` (flushed before ``write`` returns) or ``off`` (when the OS likes)."""


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_")


def _storage_error(exc: OSError, what: str) -> StorageUnavailable:
    code = errno.errorcode.get(exc.errno or 0, "OSError")
    return StorageUnavailable(detail=f"{what}: {code} {exc.strerror or exc}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _last_newline_end(fd: int, size: int, chunk: int = 1 << 16) -> int:
    """Offset just past the last ``\\n`` in the first ``size`` bytes of ``fd`` (0 when there is none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        piece = os.pread(fd, end - start, start)
        i = piece.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


@dataclass(frozen=True, slots=True)
class Location:
    """Where one record went: its part (relative to the store's directory, as written), offset, length."""

    part: str
    offset: int
    length: int

    def __str__(self) -> str:
        return f"{self.part}:{self.offset}:{self.length}"

    @classmethod
    def parse(cls, text: str) -> Location:
        part, offset, length = text.rsplit(":", 2)
        return cls(part, int(offset), int(length))

    def published(self) -> str:
        """The part's name once published."""
        return self.part.removesuffix(INPROGRESS)


def record_at(data: bytes, record_id: str, *, gz: bool) -> bool:
    """True when ``data`` is exactly one whole record (line or gzip member) with this id."""
    try:
        if gz:
            data = gzip.decompress(data)
        if not data.endswith(b"\n") or data.count(b"\n") != 1:
            return False
        return json.loads(data).get("id") == record_id
    except (OSError, EOFError, zlib.error, ValueError, AttributeError):
        return False


_stores: weakref.WeakSet[JsonlStore] = weakref.WeakSet()


def _forget_parts_after_fork() -> None:
    # a forked child shares its parent's open parts (and their locks): it must neither write to them nor
    # keep them locked once the parent is gone, so it closes its copies and starts parts of its own
    for store in list(_stores):
        store._forget_inherited()


os.register_at_fork(after_in_child=_forget_parts_after_fork)


class JsonlStore:
    """Append records to per-process JSONL part files under ``directory``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        rotate_bytes: int = 64 * 1024 * 1024,
        rotate_seconds: float = 300.0,
        compress: bool = False,
        fsync: str = "record",
        on_publish: Callable[[Path], None] | None = None,
    ) -> None:
        if rotate_bytes < 1:
            raise ValueError("rotate_bytes must be >= 1")
        if rotate_seconds <= 0:
            raise ValueError("rotate_seconds must be > 0")
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self.directory = Path(directory)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.compress = compress
        self.fsync = fsync
        self.on_publish = on_publish
        self.problems: list[str] = []
        """Torn or unreadable lines met by ``read`` (each once), for ``export`` to report."""
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._size = 0
        _stores.add(self)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.recover()

    # -- writing ---------------------------------------------------------------------------------------

    def write(self, record: dict, *, before: Callable[[Location], None] | None = None) -> Location:
        """Append one record as one whole line; on disk (per ``fsync``) when this returns.

        ``before(location)`` is called once the record's place is known and before its bytes go out (a
        caller notes it, so that a re-delivery can find the record instead of writing it twice). Raises
        ``StorageUnavailable`` when the disk refuses the write; nothing of the record is left behind then.
        """
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        if self.compress:
            line = gzip.compress(line, compresslevel=6, mtime=0)
        with self._lock:
            if self._fd is not None and (
                self._size >= self.rotate_bytes or time.monotonic() - self._opened >= self.rotate_seconds
            ):
                self._publish()
            if self._fd is None:
                self._open()
            assert self._fd is not None and self._path is not None
            where = Location(self._path.relative_to(self.directory).as_posix(), self._size, len(line))
            if before is not None:
                before(where)
            self._append(line)
            return where

    def _append(self, line: bytes) -> None:
        assert self._fd is not None and self._path is not None
        start = self._size
        try:
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "write wrote nothing")
                view = view[n:]
            if self.fsync == "record":
                os.fdatasync(self._fd)
        except OSError as exc:
            self._cut_back(start)
            raise _storage_error(exc, f"append to {self._path.name}") from exc
        self._size = start + len(line)

    def _cut_back(self, size: int) -> None:
        """Drop what a failed write left after ``size``; if even that fails, give the part up unpublished
        (its lock freed): whoever adopts it cuts it at its last whole line."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            log.warning(
                "cannot cut %s back after a failed write (%s); leaving it to a sweep", self._path, exc
            )
            fd, self._fd, self._path = self._fd, None, None
            os.close(fd)

    def _open(self) -> None:
        folder = self.directory / f"date={datetime.now(UTC).strftime('%Y-%m-%d')}"
        ext = ".jsonl.gz" if self.compress else ".jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            while True:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
                name = f"part-{_host()}-{os.getpid()}-{stamp}-{secrets.token_hex(3)}{ext}{INPROGRESS}"
                path = folder / name
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
                if self._lock_new(fd, path):
                    break
            if self.fsync == "record":
                _fsync_dir(folder)  # the part's name survives a machine crash too
        except OSError as exc:
            raise _storage_error(exc, f"open a part in {folder}") from exc
        self._fd, self._path = fd, path
        self._opened = time.monotonic()
        self._size = 0
        # an idle worker writes nothing that would trigger rotation: publish on a timer too, so readers
        # see every record within about rotate_seconds
        timer = threading.Timer(self.rotate_seconds, self._publish_if_current, args=(path,))
        timer.daemon = True
        timer.start()

    @staticmethod
    def _lock_new(fd: int, path: Path) -> bool:
        """Lock a part just created; False (fd closed) when a sweep took it first: use another name."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st, mine = os.stat(path), os.fstat(fd)
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                return True
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)
        return False

    def _forget_inherited(self) -> None:
        self._lock = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None

    # -- publishing ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Publish the current part file, if any; if that fails, unlock it so that a sweep publishes it."""
        with self._lock:
            if self._fd is not None and not self._publish():
                fd, self._fd, self._path = self._fd, None, None
                os.close(fd)

    def _publish_if_current(self, path: Path) -> None:
        with self._lock:
            if self._fd is not None and self._path == path:
                if not self._publish():  # try again later
                    timer = threading.Timer(self.rotate_seconds, self._publish_if_current, args=(path,))
                    timer.daemon = True
                    timer.start()

    def _publish(self) -> bool:
        """Rename the current part to its published name; False (part still open, ours) when that fails."""
        assert self._fd is not None and self._path is not None
        if self._size == 0:  # every write to it failed (disk full): nothing to publish
            try:
                self._path.unlink()
            except OSError as exc:
                log.warning("could not remove empty part %s: %s", self._path, exc)
            fd, self._fd, self._path = self._fd, None, None
            os.close(fd)
            return True
        target = self._path.with_name(self._path.name.removesuffix(INPROGRESS))
        try:
            os.fsync(self._fd)
            os.rename(self._path, target)
        except OSError as exc:
            # keep the part open and locked: a later rotation (or close, or a sweep after we die) retries
            log.warning("publishing %s failed, still writing to it: %s", self._path, exc)
            self._opened = time.monotonic()
            return False
        fd, self._fd, self._path = self._fd, None, None
        os.close(fd)
        if self.fsync == "record":
            try:
                _fsync_dir(target.parent)
            except OSError as exc:
                log.warning("could not flush folder %s: %s", target.parent, exc)
        if self.on_publish is not None:
            self.on_publish(target)
        self.recover()  # parts of writers that died since we last looked
        return True

    def recover(self) -> list[Path]:
        """Publish every part whose writer is gone (its lock is free), whoever and wherever it was, each cut
        back to its last complete record; returns the published paths. Also called a sweep."""
        published = []
        for path in sorted(self.directory.glob(f"date=*/part-*.jsonl*{INPROGRESS}")):
            target = self._adopt(path)
            if target is not None:
                published.append(target)
        return published

    sweep = recover

    def _adopt(self, path: Path) -> Path | None:
        if any(store._path == path for store in list(_stores)):
            return None  # ours: where flock is per process (NFS maps it to POSIX locks) it would not say so
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot open orphan candidate %s: %s", path, exc)
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # its writer is alive (maybe in this very process)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return None  # published or removed while we waited for the lock
            mine = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
                return None
            if path.name.endswith(".gz" + INPROGRESS):
                keep = _gzip_complete_length(os.pread(fd, st.st_size, 0))
            else:
                keep = _last_newline_end(fd, st.st_size)
            if keep != st.st_size:
                log.warning("cutting %s back from %d to %d bytes (torn last record)", path, st.st_size, keep)
                os.ftruncate(fd, keep)
            if keep == 0:
                path.unlink()  # unlinked under the lock: a writer that just created it takes another name
                return None
            os.fsync(fd)
            target = path.with_name(path.name.removesuffix(INPROGRESS))
            os.rename(path, target)
            if self.fsync == "record":
                _fsync_dir(path.parent)
            return target
        except OSError as exc:
            log.warning("could not publish orphaned part %s: %s", path, exc)
            return None
        finally:
            os.close(fd)

    # -- reading ---------------------------------------------------------------------------------------

    def read(self) -> Iterator[dict]:
        """Every published record, in file order (re-deliveries may repeat an id; see ``export``)."""
        return read_records(self.directory, problems=self.problems)

    def holds(self, location: str, record_id: str) -> bool:
        """True when the part at ``location`` (open or published) holds record ``record_id`` whole there."""
        where = Location.parse(location)
        for name in (where.part, where.published()):
            try:
                with open(self.directory / name, "rb") as fh:
                    fh.seek(where.offset)
                    data = fh.read(where.length)
                    found = len(data) == where.length and record_at(data, record_id, gz=".gz" in name)
                    if found and self.fsync == "record":
                        os.fsync(fh.fileno())  # its writer may have died before flushing it
            except FileNotFoundError:
                continue  # published in between: the next name has it
            except OSError as exc:
                raise _storage_error(exc, f"read back {name}") from exc
            return found
        return False


def _note(problems: list[str] | None, message: str) -> None:
    log.warning("%s", message)
    if problems is not None and message not in problems:
        problems.append(message)


def parse_lines(fh: IO[bytes], name: str, problems: list[str] | None = None) -> Iterator[dict]:
    """The records of one JSONL stream; a torn or unreadable line is skipped and noted in ``problems``."""
    offset = 0
    try:
        for raw in fh:
            at, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except ValueError:
                kind = "unreadable line" if raw.endswith(b"\n") else "torn last line"
                _note(problems, f"{name}: {kind} at byte {at} ({len(raw)} bytes) skipped")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        _note(problems, f"{name}: truncated compressed data after {offset} bytes of text skipped ({exc})")


def iter_lines(path: Path, problems: list[str] | None = None) -> Iterator[dict]:
    """The records of one published part file (plain or gzip)."""
    opener: Callable[..., IO[bytes]] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        yield from parse_lines(fh, str(path), problems)


def read_records(directory: str | os.PathLike[str], problems: list[str] | None = None) -> Iterator[dict]:
    """Every published record under ``directory`` (``.jsonl`` and ``.jsonl.gz`` parts), in file order."""
    root = Path(directory)
    paths: Iterable[Path] = sorted([*root.rglob("*.jsonl"), *root.rglob("*.jsonl.gz")])
    for path in paths:
        try:
            yield from iter_lines(path, problems)
        except FileNotFoundError:
            continue  # an S3 spool part uploaded and removed while we listed
