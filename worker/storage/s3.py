"""Records as batched JSONL objects in S3 (or any S3-compatible store), through fsspec/s3fs.

Records are first appended to a local spool, which is the JSONL backend itself (per-process part files,
crash-safe, rotated by size and time); each published part is uploaded as one object,
``s3://bucket/prefix/date=YYYY-MM-DD/part-<host>-<pid>-<time>-<rand>.jsonl[.gz]``, then deleted locally.
So a write is durable on local disk when it returns (the task may be acknowledged), a worker killed
mid-batch loses nothing (its part is adopted and uploaded when the next store on that spool opens or
rotates), and an upload that fails (S3 away) stays in the spool and is retried in the background with
backoff until it goes through, with no new write needed. Keep the spool on a persistent volume in
containers. A re-delivered task finds its record in the spool or in the uploaded object (``holds``).

Credentials, region and endpoint come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``), or
``endpoint_url`` for programs that embed us.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import s3fs
from botocore.exceptions import BotoCoreError, ClientError

from ingest_core.errors import StorageUnavailable
from worker.storage.jsonl import INPROGRESS, JsonlStore, Location, parse_lines, record_at

log = logging.getLogger(__name__)

UPLOAD_RETRY_MAX_DELAY = 30.0
"""Longest pause between two background tries of an upload that failed (S3 away)."""

_S3_FAULTS = (OSError, BotoCoreError, ClientError)


class S3Storage:
    """Spool records locally, upload each published part as one object under ``s3://bucket/prefix``."""

    def __init__(
        self,
        url: str,
        *,
        spool_dir: str | os.PathLike[str] = "./data/spool",
        rotate_bytes: int = 16 * 1024 * 1024,
        rotate_seconds: float = 60.0,
        compress: bool = False,
        fsync: str = "record",
        endpoint_url: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"expected s3://bucket[/prefix], got {url!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # no instance cache: s3fs instances hold an event loop thread, which must not cross a fork
        self.fs = s3fs.S3FileSystem(
            client_kwargs={"endpoint_url": endpoint} if endpoint else {}, skip_instance_cache=True
        )
        self.spool_dir = Path(spool_dir) / self.bucket / (self.prefix or "_")
        self._upload_lock = threading.Lock()
        self._retry_lock = threading.Lock()
        self._retry_timer: threading.Timer | None = None
        self._retry_delay = 1.0
        self.problems: list[str] = []
        """Torn or unreadable lines met by ``read``, for ``export`` to report."""
        self.spool = JsonlStore(
            self.spool_dir,
            rotate_bytes=rotate_bytes,
            rotate_seconds=rotate_seconds,
            compress=compress,
            fsync=fsync,
            on_publish=self._on_publish,
        )
        self.upload_pending()  # parts recovered from a killed process, or left by a failed upload

    def _key(self, path: Path) -> str:
        rel = path.relative_to(self.spool_dir).as_posix()
        return "/".join(p for p in (self.bucket, self.prefix, rel) if p)

    def _upload(self, path: Path) -> None:
        self.fs.put_file(str(path), self._key(path))
        path.unlink(missing_ok=True)  # another process on this spool may have uploaded it too

    def _on_publish(self, path: Path) -> None:
        # upload off the write path: a slow or absent S3 must not hold up a record write (nor its task)
        self._schedule_upload(0.0)

    def upload_pending(self) -> int:
        """Upload every published part still in the spool; returns how many were uploaded.

        When an upload fails the part stays in the spool and a background retry is scheduled (backoff
        with jitter, at most ``UPLOAD_RETRY_MAX_DELAY`` apart) until the spool is empty.
        """
        n, failed = 0, False
        with self._upload_lock:
            parts = [
                p for p in sorted(self.spool_dir.rglob("part-*.jsonl*")) if not p.name.endswith(INPROGRESS)
            ]
            for i, path in enumerate(parts):
                if not path.exists():
                    continue
                try:
                    self._upload(path)
                except FileNotFoundError:
                    continue
                except Exception as exc:  # S3 away, or refusing: keep the parts, try again later
                    kept = ", ".join(p.name for p in parts[i:])
                    log.warning("upload of %s failed, kept in spool (%s): %s", path, kept, exc)
                    failed = True
                    break
                n += 1
        if failed:
            self._schedule_upload()
        else:
            self._retry_delay = 1.0
        return n

    def _schedule_upload(self, delay: float | None = None) -> None:
        """Upload the spool from a background thread after ``delay`` s (None: the next backoff step)."""
        with self._retry_lock:
            if self._retry_timer is not None and self._retry_timer.is_alive():
                return
            if delay is None:
                delay = self._retry_delay * (0.5 + random.random() / 2)
                self._retry_delay = min(UPLOAD_RETRY_MAX_DELAY, self._retry_delay * 2)
            self._retry_timer = threading.Timer(delay, self._retry_uploads)
            self._retry_timer.daemon = True
            self._retry_timer.start()

    def _retry_uploads(self) -> None:
        with self._retry_lock:
            self._retry_timer = None
        self.spool.recover()  # parts of spool writers that died meanwhile go up too
        self.upload_pending()

    def write(self, record: dict[str, Any], *, before: Callable[[Location], None] | None = None) -> Location:
        """Append to the local spool (durable there per ``fsync``); uploaded with its batch."""
        return self.spool.write(record, before=before)

    def holds(self, location: str, record_id: str) -> bool:
        """True when the record is whole at ``location``: still in the spool, or in its uploaded object."""
        if self.spool.holds(location, record_id):
            return True
        where = Location.parse(location)
        key = self._key(self.spool_dir / where.published())
        try:
            data = self.fs.cat_file(key, start=where.offset, end=where.offset + where.length)
        except FileNotFoundError:
            return False
        except _S3_FAULTS as exc:
            raise StorageUnavailable(detail=f"S3 read back {key}: {exc}") from exc
        return len(data) == where.length and record_at(data, record_id, gz=key.endswith(".gz"))

    def close(self) -> None:
        """Publish and upload the current batch and anything left in the spool."""
        self.spool.close()
        self.upload_pending()
        with self._retry_lock:
            if self._retry_timer is not None:
                self._retry_timer.cancel()
                self._retry_timer = None

    def objects(self) -> list[str]:
        """Keys of the record objects under the prefix, in name order."""
        self.fs.invalidate_cache()
        root = "/".join(p for p in (self.bucket, self.prefix) if p)
        try:
            keys = self.fs.find(root)
        except FileNotFoundError:
            return []
        except _S3_FAULTS as exc:
            raise StorageUnavailable(detail=f"S3 list {root}: {exc}") from exc
        return sorted(k for k in keys if k.endswith((".jsonl", ".jsonl.gz")))

    def read(self) -> Iterator[dict[str, Any]]:
        """Every uploaded record, object by object; a torn line is skipped and noted in ``problems``."""
        for key in self.objects():
            compression = "gzip" if key.endswith(".gz") else None
            try:
                with self.fs.open(key, "rb", compression=compression) as fh:
                    yield from parse_lines(fh, f"s3://{key}", self.problems)
            except FileNotFoundError:
                continue
            except _S3_FAULTS as exc:
                raise StorageUnavailable(detail=f"S3 read {key}: {exc}") from exc
