"""Records as batched JSONL objects in S3 (or any S3-compatible store), through fsspec/s3fs.

Records are first appended to a local spool, which is the JSONL backend itself (per-process part files,
crash-safe, rotated by size and time); each published part is uploaded as one object,
``s3://bucket/prefix/date=YYYY-MM-DD/part-<host>-<pid>-<time>.jsonl[.gz]``, then deleted locally. So a
write is durable on local disk when it returns (the task may be acknowledged), a worker killed mid-batch
loses nothing (its part is recovered and uploaded when the next store opens on that spool), and an upload
that fails is retried at the next rotation. Keep the spool on a persistent volume in containers.

Credentials, region and endpoint come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``), or
``endpoint_url`` for programs that embed us.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import s3fs

from worker.storage.jsonl import INPROGRESS, JsonlStore

log = logging.getLogger(__name__)


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
        self.spool = JsonlStore(
            self.spool_dir,
            rotate_bytes=rotate_bytes,
            rotate_seconds=rotate_seconds,
            compress=compress,
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
        try:
            self._upload(path)
        except Exception as exc:  # the part stays in the spool; the next rotation or start retries it
            log.warning("upload of %s failed, kept in spool: %s", path, exc)
            return
        self.upload_pending()

    def upload_pending(self) -> int:
        """Upload every published part still in the spool; returns how many were uploaded."""
        n = 0
        with self._upload_lock:
            for path in sorted(self.spool_dir.rglob("part-*.jsonl*")):
                if path.name.endswith(INPROGRESS) or not path.exists():
                    continue
                try:
                    self._upload(path)
                except FileNotFoundError:
                    continue
                except Exception as exc:
                    log.warning("upload of %s failed, kept in spool: %s", path, exc)
                    break
                n += 1
        return n

    def write(self, record: dict[str, Any]) -> None:
        """Append to the local spool; uploaded with its batch."""
        self.spool.write(record)

    def close(self) -> None:
        """Publish and upload the current batch and anything left in the spool."""
        self.spool.close()
        self.upload_pending()

    def objects(self) -> list[str]:
        """Keys of the record objects under the prefix, in name order."""
        self.fs.invalidate_cache()
        root = "/".join(p for p in (self.bucket, self.prefix) if p)
        try:
            keys = self.fs.find(root)
        except FileNotFoundError:
            return []
        return sorted(k for k in keys if k.endswith((".jsonl", ".jsonl.gz")))

    def read(self) -> Iterator[dict[str, Any]]:
        """Every uploaded record, object by object (a re-delivered record may appear twice)."""
        for key in self.objects():
            compression = "gzip" if key.endswith(".gz") else None
            with self.fs.open(key, "rt", compression=compression, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
