"""The HTTP submission API (FastAPI): ``POST /v1/urls``, ``GET /healthz``, OpenAPI at ``/openapi.json``.

A thin door onto ``producers.submit``: the body is a JSON list of URLs (or ``{"urls": [...]}``) or plain
text with one URL a line, at most ``MAX_URLS_PER_REQUEST`` of them (413 above: a request is answered within
seconds, not held for minutes); the answer is 202 with what was accepted, already seen and rejected (with
reasons). Anything else (malformed or nested JSON, numbers) is a 400. A bearer token (``INGEST_API_TOKEN``)
is checked on every route but ``/healthz`` when set, ``/openapi.json``, ``/docs`` and ``/redoc`` included;
``ingest serve`` refuses to bind a non-loopback address without one.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from ingest_core.settings import Settings

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body accepted, in bytes (413 above)."""

MAX_URLS_PER_REQUEST = 10_000
"""Most URLs one request may carry (413 above; send bigger lists in several requests): one request is
answered in a few seconds instead of holding its connection while a million URLs are queued."""

API_VERSION = "1.0.0"
"""Version of the HTTP API as published in its OpenAPI document."""


class RejectedURL(BaseModel):
    url: str
    reason: str


class SubmitResponse(BaseModel):
    """What happened to each URL of the request."""

    batch: str
    submitted: int
    accepted: int
    duplicates: int
    rejected: list[RejectedURL]


class Health(BaseModel):
    status: str
    redis: bool
    broker: bool


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where no token is needed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_body(body: bytes, content_type: str) -> list[str]:
    """URLs from a JSON list / ``{"urls": [...]}`` or from newline-separated text."""
    mime = content_type.split(";")[0].strip().lower()
    if mime == "application/json" or (not mime and body.lstrip()[:1] in (b"[", b"{")):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"body is not valid JSON: {exc}") from None
        except RecursionError:  # [[[[... nested past the parser's stack: no URL list is that deep
            raise HTTPException(400, "body is not valid JSON: nested too deeply") from None
        if isinstance(data, dict):
            data = data.get("urls")
        if not isinstance(data, list) or not all(isinstance(u, str) for u in data):
            raise HTTPException(400, 'JSON body must be a list of URL strings or {"urls": [...]}')
        _check_count(len(data))
        return data
    text = body.decode("utf-8", errors="surrogateescape")
    urls = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    _check_count(len(urls))
    return urls


def _check_count(n: int) -> None:
    if n > MAX_URLS_PER_REQUEST:
        raise HTTPException(
            413, f"{n} URLs in one request; at most {MAX_URLS_PER_REQUEST}: send them in several requests"
        )


_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "array", "items": {"type": "string"}},
                    {
                        "type": "object",
                        "properties": {"urls": {"type": "array", "items": {"type": "string"}}},
                        "required": ["urls"],
                    },
                ]
            },
            "example": ["https://example.com/news/1", "https://example.com/news/2"],
        },
        "text/plain": {
            "schema": {"type": "string"},
            "example": "https://example.com/news/1\nhttps://example.com/news/2\n",
        },
    },
}


def create_app(settings: Settings, *, state: Any = None) -> FastAPI:
    """The API for one deployment; ``state`` defaults to the one the settings name."""
    from producers import BrokerUnavailable, check_broker_url, submit
    from producers.cli import tracking_params

    if state is None:
        from ingest_core.state import state_from_settings

        state = state_from_settings(settings)
    token = settings.api_token
    strip = tracking_params(settings)
    bearer = HTTPBearer(auto_error=False)

    def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if not token:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    # FastAPI's own /openapi.json, /docs and /redoc take no dependencies: served here behind the token
    api = FastAPI(
        title="article-ingest submission API",
        version=API_VERSION,
        description="Submit article URLs for fetching, extraction and storage.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @api.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorize)])
    async def openapi() -> JSONResponse:
        return JSONResponse(api.openapi())

    @api.get("/docs", include_in_schema=False, dependencies=[Depends(authorize)])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{api.title} - docs")

    @api.get("/redoc", include_in_schema=False, dependencies=[Depends(authorize)])
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{api.title} - ReDoc")

    @api.post(
        "/v1/urls",
        status_code=202,
        response_model=SubmitResponse,
        dependencies=[Depends(authorize)],
        openapi_extra={"requestBody": _REQUEST_BODY},
        responses={
            400: {"description": "Body is not a JSON list of strings (malformed, nested, not strings)"},
            401: {"description": "Missing or wrong bearer token"},
            413: {"description": f"More than {MAX_URLS_PER_REQUEST:,} URLs, or a body larger than 16 MiB"},
            503: {"description": "Broker or Redis unreachable; nothing was queued"},
        },
    )
    async def submit_urls(
        request: Request,
        source: str = Query("api", max_length=64, description="Recorded as the records' source."),
        force: bool = Query(False, description="Queue even URLs stored before."),
    ) -> SubmitResponse:
        """Validate, deduplicate and queue up to 10,000 URLs; 202: accepted, already seen, rejected (why)."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
        urls = parse_body(bytes(body), request.headers.get("content-type", ""))
        try:
            result = await run_in_threadpool(
                submit,
                urls,
                source=source,
                force=force,
                state=state,
                max_url_length=settings.max_url_length,
                strip_params=strip,
            )
        except BrokerUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        return SubmitResponse(
            batch=result.batch,
            submitted=result.submitted,
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=[
                RejectedURL(url=u.encode("utf-8", "backslashreplace").decode(), reason=r)
                for u, r in result.rejected
            ],
        )

    @api.get("/healthz", response_model=Health, responses={503: {"description": "Redis or broker down"}})
    async def healthz() -> Any:
        """Liveness and readiness: Redis and the broker both answer."""

        def probe() -> tuple[bool, bool]:
            try:
                redis_ok = bool(state.r.ping())
            except Exception:  # noqa: BLE001 - any failure means "not ready"
                redis_ok = False
            try:
                check_broker_url(settings.broker_url or settings.state_url, timeout=2.0)
                broker_ok = True
            except BrokerUnavailable:
                broker_ok = False
            return redis_ok, broker_ok

        redis_ok, broker_ok = await run_in_threadpool(probe)
        status = "ok" if redis_ok and broker_ok else "unavailable"
        health = Health(status=status, redis=redis_ok, broker=broker_ok)
        if health.status != "ok":
            raise HTTPException(503, health.model_dump())
        return health

    return api
