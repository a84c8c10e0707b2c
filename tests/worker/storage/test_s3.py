import gzip
import io
import json
import subprocess
import sys

import boto3

from tests.worker.storage.conftest import make_record
from worker.storage import export, open_storage
from worker.storage.jsonl import INPROGRESS, _host
from worker.storage.s3 import S3Storage


def _objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_records_land_as_batched_jsonl_objects(s3_bucket, s3_server, tmp_path):
    """Records are uploaded in batches, one JSONL object per batch under the prefix and a date partition."""
    store = open_storage(f"s3://{s3_bucket}/news", spool_dir=tmp_path, rotate_bytes=3_000)
    for n in range(10):
        store.write(make_record(n))
    store.close()
    objects = _objects(s3_server, s3_bucket)
    assert 1 < len(objects) < 10
    assert all(k.startswith("news/date=") and k.endswith(".jsonl") for k in objects)
    ids = [json.loads(line)["id"] for body in objects.values() for line in body.splitlines()]
    assert sorted(ids) == [f"{n:032x}" for n in range(10)]
    assert not [p for p in tmp_path.rglob("part-*") if p.is_file()]  # spool emptied after upload


def test_gzip_objects_read_back(s3_bucket, s3_server, tmp_path):
    """With compress=True the objects are .jsonl.gz and read() decompresses them."""
    store = S3Storage(f"s3://{s3_bucket}/z", spool_dir=tmp_path, compress=True)
    store.write(make_record(7))
    store.close()
    ((key, body),) = _objects(s3_server, s3_bucket).items()
    assert key.endswith(".jsonl.gz") and json.loads(gzip.decompress(body))["id"] == f"{7:032x}"
    assert [r["id"] for r in store.read()] == [f"{7:032x}"]


def test_same_record_twice_exports_once(s3_bucket, tmp_path):
    """At-least-once: one record id written twice (re-delivery) is two lines in S3, one line in export."""
    store = S3Storage(f"s3://{s3_bucket}/dup", spool_dir=tmp_path)
    store.write(make_record(1))
    store.write(make_record(1))
    store.close()
    assert len(list(store.read())) == 2
    out = io.StringIO()
    assert export(store, out) == 1


def test_spool_of_a_killed_writer_is_uploaded_when_the_next_store_opens(s3_bucket, tmp_path):
    """A part left in the spool by a killed worker (half a line at its end) is uploaded on the next start."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    folder = tmp_path / s3_bucket / "k" / "date=2026-01-01"
    folder.mkdir(parents=True)
    lines = "".join(json.dumps(make_record(n)) + "\n" for n in range(2)) + '{"id": "torn'
    (folder / f"part-{_host()}-{int(dead.stdout)}-20260101T000000000000.jsonl{INPROGRESS}").write_text(lines)
    store = S3Storage(f"s3://{s3_bucket}/k", spool_dir=tmp_path)
    assert [r["id"] for r in store.read()] == [f"{0:032x}", f"{1:032x}"]
    store.close()


def test_a_record_is_found_where_it_was_written_in_the_spool_and_after_upload(s3_bucket, tmp_path):
    """holds() finds a record at its noted location while spooled and once uploaded (spool emptied), so a
    re-delivered task does not write it into S3 twice; another id at that place is not found."""
    store = S3Storage(f"s3://{s3_bucket}/once", spool_dir=tmp_path, rotate_seconds=3600)
    store.write(make_record(1))
    where = str(store.write(make_record(2)))
    assert store.holds(where, f"{2:032x}")
    store.close()
    assert not [p for p in tmp_path.rglob("part-*") if p.is_file()]  # only S3 has it now
    assert store.holds(where, f"{2:032x}")
    assert not store.holds(where, f"{1:032x}")
