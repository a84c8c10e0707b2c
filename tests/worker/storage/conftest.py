"""Real backends for storage tests: PostgreSQL at ``INGEST_TEST_POSTGRES_URL``, moto's S3 server on loopback.

With ``INGEST_TEST_REQUIRE_SERVICES=1`` (CI) a missing or unreachable PostgreSQL fails the test; otherwise
it is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ingest_core.embedded import free_port


def make_record(
    n: int, *, fetched_at: str = "2026-03-01T08:00:00Z", title: str | None = None
) -> dict[str, Any]:
    """A small schema-v1 record with a stable id per ``n``."""
    return {
        "id": f"{n:032x}",
        "url": f"https://news.example/articles/{n}",
        "final_url": f"https://news.example/articles/{n}",
        "status": 200,
        "fetched_at": fetched_at,
        "title": title or f"Story {n}",
        "author": "Reporter",
        "published": "2026-02-27",
        "language": "en",
        "text": f"Story {n} text. " * 20,
        "word_count": 60,
        "content_hash": f"{n:064x}",
        "source": "test",
        "schema_version": 1,
        "domain": "news.example",
        "tags": ["a", "b"],
    }


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL URL (INGEST_TEST_POSTGRES_URL)."""
    import psycopg

    url = os.environ.get("INGEST_TEST_POSTGRES_URL")
    required = os.environ.get("INGEST_TEST_REQUIRE_SERVICES") == "1"
    if not url:
        if required:
            pytest.fail("INGEST_TEST_REQUIRE_SERVICES=1 but INGEST_TEST_POSTGRES_URL is not set")
        pytest.skip("set INGEST_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) to run")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"INGEST_TEST_POSTGRES_URL={url} is unreachable: {exc}")
    return url


@pytest.fixture
def pg_table(postgres_url: str) -> Iterator[str]:
    """A fresh table name; the table and its migrations log are dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}, {name}_migrations")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3-compatible server on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Standard AWS variables pointing at the moto server, set for this process."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def s3_bucket(s3_env: dict[str, str], s3_server: str) -> str:
    """A fresh, empty bucket on the moto server."""
    import boto3

    name = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
