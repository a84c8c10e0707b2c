"""``ingest serve``, started as a subprocess and spoken to over HTTP on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest_core.embedded import free_port
from tests.conftest import REPO
from tests.producers.conftest import frontier_jobs

TOKEN = "s3cret-token"


def _env(redis_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        INGEST_BROKER_URL=redis_url,
        INGEST_DATA_DIR=str(tmp),
        INGEST_KEY_PREFIX=f"api{uuid.uuid4().hex[:6]}",
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def _start(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            return proc, base
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("ingest serve did not start") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def api_env(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the `api` server (its INGEST_KEY_PREFIX names its frontier keys)."""
    return _env(redis_url, tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def api(api_env: dict[str, str]) -> Iterator[str]:
    """Base URL of an `ingest serve` without a token."""
    proc, base = _start(api_env)
    yield base
    _stop(proc)


@pytest.fixture(scope="module")
def secured_api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of an `ingest serve` that requires a bearer token."""
    proc, base = _start(_env(redis_url, tmp_path_factory.mktemp("api"), INGEST_API_TOKEN=TOKEN))
    yield base
    _stop(proc)


def _post(
    url: str, body: bytes, ctype: str, token: str | None = None, timeout: float = 10
) -> tuple[int, dict]:
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_json_list_is_accepted_with_202_and_reasons(api, api_env, redis_client) -> None:
    """A JSON list: 202 with accepted, duplicates and each rejected URL with its reason; jobs are queued."""
    urls = [
        "https://api.example/1",
        "https://api.example/1#dup",
        "ftp://api.example/x",
        "https://u:p@a.example/",
    ]
    status, body = _post(api + "/v1/urls", json.dumps(urls).encode(), "application/json")
    assert status == 202
    assert (body["submitted"], body["accepted"], body["duplicates"]) == (4, 1, 1)
    assert body["rejected"] == [
        {"url": "ftp://api.example/x", "reason": "unsupported_scheme"},
        {"url": "https://u:p@a.example/", "reason": "credentials_in_url"},
    ]
    jobs = frontier_jobs(redis_client, api_env["INGEST_KEY_PREFIX"])
    assert [j["url"] for j in jobs] == ["https://api.example/1"]


def test_newline_text_is_accepted(api, api_env, redis_client) -> None:
    """A text/plain body with one URL a line (comments and blanks ignored) is submitted."""
    text = b"# from a script\nhttps://api.example/t1\n\nhttps://api.example/t2\n"
    status, body = _post(api + "/v1/urls", text, "text/plain")
    assert (status, body["accepted"]) == (202, 2)
    jobs = frontier_jobs(redis_client, api_env["INGEST_KEY_PREFIX"])
    assert sorted(j["url"] for j in jobs) == ["https://api.example/t1", "https://api.example/t2"]


def test_json_that_is_not_a_list_of_strings_is_a_400(api) -> None:
    """Malformed JSON or a list of numbers is refused with 400 and a message."""
    assert _post(api + "/v1/urls", b"[1, 2]", "application/json")[0] == 400
    assert _post(api + "/v1/urls", b'["https://a', "application/json")[0] == 400


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"urls": ' + b"[" * 100_000, b"[" * 5000 + b"]" * 5000])
def test_deeply_nested_json_is_a_400(api, body: bytes) -> None:
    """JSON nested past any URL list (100,000 brackets, open or closed) is a 400, not a 500."""
    status, answer = _post(api + "/v1/urls", body, "application/json")
    assert status == 400 and "JSON" in answer["detail"]


def test_more_urls_than_the_maximum_is_a_413_at_once(api) -> None:
    """One URL over MAX_URLS_PER_REQUEST (JSON or text) is refused with 413 within seconds; the maximum
    itself is accepted."""
    from producers.api import MAX_URLS_PER_REQUEST

    urls = [f"https://bulk.example/{n}" for n in range(MAX_URLS_PER_REQUEST + 1)]
    start = time.monotonic()
    status, answer = _post(api + "/v1/urls", json.dumps(urls).encode(), "application/json")
    assert status == 413 and str(MAX_URLS_PER_REQUEST) in answer["detail"].replace(",", "")
    status, _ = _post(api + "/v1/urls", "\n".join(urls).encode(), "text/plain")
    assert status == 413
    assert time.monotonic() - start < 10
    status, answer = _post(api + "/v1/urls", json.dumps(urls[:-1]).encode(), "application/json", timeout=120)
    assert status == 202 and answer["accepted"] == MAX_URLS_PER_REQUEST


def test_healthz_reports_redis_and_broker(api) -> None:
    """GET /healthz answers 200 with both dependencies up."""
    with urllib.request.urlopen(api + "/healthz", timeout=5) as resp:
        assert json.loads(resp.read()) == {"status": "ok", "redis": True, "broker": True}


def test_openapi_spec_is_published_and_committed(api) -> None:
    """/openapi.json describes POST /v1/urls (JSON and text bodies) and matches docs/openapi.json."""
    with urllib.request.urlopen(api + "/openapi.json", timeout=5) as resp:
        spec = json.loads(resp.read())
    body = spec["paths"]["/v1/urls"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "text/plain"}
    assert "202" in spec["paths"]["/v1/urls"]["post"]["responses"]
    assert json.loads((REPO / "docs" / "openapi.json").read_text()) == spec


def test_token_is_required_when_configured(secured_api) -> None:
    """With INGEST_API_TOKEN set, no or a wrong token is a 401 and the right one a 202."""
    url = secured_api + "/v1/urls"
    assert _post(url, b"[]", "application/json")[0] == 401
    assert _post(url, b"[]", "application/json", token="wrong")[0] == 401
    assert _post(url, b'["https://api.example/s"]', "application/json", token=TOKEN)[0] == 202


def _get_status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_schema_and_docs_need_the_token_when_configured(secured_api, path: str) -> None:
    """With INGEST_API_TOKEN set, the schema and the docs pages are 401 without the token, 200 with it."""
    assert _get_status(secured_api + path) == 401
    assert _get_status(secured_api + path, token="wrong") == 401
    assert _get_status(secured_api + path, token=TOKEN) == 200


def test_binding_a_public_address_without_a_token_is_refused(redis_url, tmp_path) -> None:
    """`ingest serve --host 0.0.0.0` without INGEST_API_TOKEN exits with a usage error, serving nothing."""
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=_env(redis_url, tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "INGEST_API_TOKEN" in proc.stderr
