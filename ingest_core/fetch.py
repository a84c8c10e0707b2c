"""Fetch stage: one URL in, decoded HTML out, or an error from ``ingest_core.errors`` with a stable reason.

Safety and politeness live here so no caller can forget them: every redirect hop is resolved once, vetted
by the SSRF guard (``netguard.py``) and connected to by the vetted IP (Host header, TLS SNI and certificate
checks still use the name). Time (connect, read, total deadline), size (decoded bytes, so a gzip bomb stops
at the cap) and redirects are capped. requests/urllib3/socket exceptions are converted here and nowhere else.

The deadline covers the whole exchange: DNS, connect, TLS, status line, headers and body of every hop. Socket
timeouts bound one recv, not a line, so a server trickling its status line or a header one byte a second
would never time out; a watchdog thread shuts the socket down when the deadline passes (``_Watchdog``).

Reason codes: ``http_<status>``, ``timeout``, ``connection_error``, ``connection_refused``,
``incomplete_body``, ``dns_error``,
``blocked_address``, ``too_large``, ``too_many_redirects``, ``redirect_loop``, ``bad_redirect``,
``tls_error``, ``unsupported_scheme``, ``invalid_url``, ``unsupported_encoding``, ``decode_error``,
``not_html`` (Skip).
"""

from __future__ import annotations

import codecs
import email.utils
import heapq
import ipaddress
import itertools
import os
import re
import socket
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import urllib3
import urllib3.connection
import urllib3.exceptions as u3e

from ingest_core.errors import (
    HostUnreachable,
    IngestError,
    InvalidURL,
    PermanentError,
    RateLimited,
    Skip,
    TransientError,
)
from ingest_core.netguard import NetGuard, Resolver

if TYPE_CHECKING:
    from ingest_core.settings import Settings

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
"""Content types fetched as pages; anything else is ``Skip("not_html")``."""

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
"""Statuses worth retrying later (5xx origin/gateway trouble, rate limiting); other 4xx/5xx are permanent."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Types that say "I don't know": we sniff the body instead of trusting them.
_GENERIC_TYPES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/unknown",
        "unknown/unknown",
        "text/plain",
        "application/x-unknown-content-type",
    }
)

_CHUNK = 64 * 1024
_SNIFF_BYTES = 1024
_POOLS_PER_THREAD = 16
_DRAIN_MAX = 64 * 1024

# Only codings zlib can inflate with an output limit: brotli has no such bound, so a br bomb could not be
# stopped at the cap; we never advertise it and refuse it if sent anyway.
_ACCEPT_ENCODING = "gzip, deflate"


@dataclass(slots=True)
class FetchResult:
    """A fetched page. ``headers`` keys are lower-case; ``nbytes`` counts decoded body bytes."""

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    content_type: str
    encoding: str
    html: str
    nbytes: int
    elapsed: float


@dataclass(slots=True)
class _Target:
    url: str
    scheme: str
    host: str  # IDNA-encoded, lower-case, no brackets
    port: int
    request_target: str  # path?query
    host_header: str


# -- the deadline of a whole exchange ------------------------------------------------------------------------


class _Alarm:
    """One armed deadline: a duplicate of the exchange's socket fd, shut down if the deadline passes.

    The duplicate fd keeps the number ours (no other socket can reuse it before :meth:`cancel`), survives the
    TLS wrap (which detaches the original socket object) and shuts down the very same connection.
    """

    __slots__ = ("fired", "sock", "when")

    def __init__(self, sock: socket.socket, when: float) -> None:
        self.sock: socket.socket | None = socket.socket(fileno=os.dup(sock.fileno()))
        self.when = when
        self.fired = False

    def fire(self) -> None:
        if self.sock is not None:
            self.fired = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv in the fetching thread
            except OSError:
                pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Watchdog:
    """One daemon thread per process that fires the alarms whose deadline has passed."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, when: float) -> _Alarm:
        alarm = _Alarm(sock, when)
        with self._cond:
            earliest = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, next(self._seq), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-deadline", daemon=True)
                self._thread.start()
            if earliest:  # the thread sleeps until the earliest deadline: wake it only when that moved
                self._cond.notify()
        return alarm

    def cancel(self, alarm: _Alarm) -> None:
        with self._cond:  # under the lock: once this returns, the alarm can no longer fire
            alarm.close()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].sock is None:
                    heapq.heappop(self._heap)  # cancelled
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(self._heap)[2]
                alarm.fire()
                alarm.close()


_WATCHDOG = _Watchdog()


class _Exchange(threading.local):
    """The deadline of the fetch running in this thread, and the alarms armed for it."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.alarms: list[_Alarm] = []

    def guard(self, sock: socket.socket | None) -> None:
        if self.deadline is not None and sock is not None:
            self.alarms.append(_WATCHDOG.arm(sock, self.deadline))

    @property
    def fired(self) -> bool:
        return any(a.fired for a in self.alarms)


_EXCHANGE = _Exchange()


@contextmanager
def _exchange_deadline(deadline: float) -> Iterator[_Exchange]:
    """Every socket this thread opens or reuses inside the block is shut down at ``deadline``."""
    ex = _EXCHANGE
    ex.deadline, ex.alarms = deadline, []
    try:
        yield ex
    finally:
        for alarm in ex.alarms:
            _WATCHDOG.cancel(alarm)
        ex.deadline, ex.alarms = None, []


class _DeadlineMixin:
    """Arms the thread's exchange deadline on the connection's socket: new (before TLS) or reused."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _EXCHANGE.guard(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _EXCHANGE.guard(self.sock)  # a kept-alive connection: no _new_conn this time
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_DeadlineMixin, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class Fetcher:
    """Fetches pages safely; thread-safe (connection pools are per thread)."""

    def __init__(
        self,
        *,
        user_agent: str,
        connect_timeout: float,
        read_timeout: float,
        deadline: float,
        max_bytes: int,
        max_redirects: int,
        allow_private_networks: bool = False,
        allow_networks: Sequence[str] = (),
        resolver: Resolver | None = None,
        ca_certs: str | None = None,
    ) -> None:
        if not user_agent:
            raise ValueError("user_agent must not be empty")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("deadline", deadline),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        self.user_agent = user_agent
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.deadline = float(deadline)
        self.max_bytes = int(max_bytes)
        self.max_redirects = int(max_redirects)
        self.guard = NetGuard(
            allow_private_networks=allow_private_networks, allow_networks=allow_networks, resolver=resolver
        )
        if ca_certs is None:
            try:
                import certifi

                ca_certs = certifi.where()
            except ImportError:  # pragma: no cover - certifi ships with requests
                ca_certs = None
        self.ca_certs = ca_certs
        self._local = threading.local()

    @classmethod
    def from_settings(cls, s: Settings) -> Fetcher:
        """Build a Fetcher from settings; the only place fetch settings are read."""
        return cls(
            user_agent=s.user_agent,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            deadline=s.fetch_deadline,
            max_bytes=s.max_bytes,
            max_redirects=s.max_redirects,
            allow_private_networks=s.allow_private_networks,
            allow_networks=[n for n in s.allow_networks.split(",") if n.strip()],
        )

    # -- public API -------------------------------------------------------------------------------------

    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> FetchResult:
        """GET ``url`` as an HTML page; a 304 (conditional GET not modified) is returned with html ''."""
        return self._fetch(
            url,
            etag=etag,
            last_modified=last_modified,
            types=HTML_TYPES,
            max_bytes=self.max_bytes,
            truncate=False,
        )

    def fetch_text(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        truncate: bool = True,
        etag: str | None = None,
        last_modified: str | None = None,
        raw: bool = False,
    ) -> FetchResult:
        """GET any text resource (robots.txt, feeds, sitemaps): no content-type filter; body cut at
        ``max_bytes`` if truncate.

        Same safety, timeouts and error mapping as :meth:`fetch`, conditional GET included (304 comes back
        with an empty body); without a declared charset the body is decoded as UTF-8 (RFC 9309). ``raw``
        leaves decoding to the caller (XML and .gz files carry their own): ``html`` then holds the bytes
        as latin-1, so ``result.html.encode("latin-1")`` gives them back unchanged.
        """
        return self._fetch(
            url,
            etag=etag,
            last_modified=last_modified,
            types=None,
            max_bytes=max_bytes or self.max_bytes,
            truncate=truncate,
            raw=raw,
        )

    def close(self) -> None:
        """Close this thread's pooled connections."""
        pools: OrderedDict[Any, urllib3.HTTPConnectionPool] | None = getattr(self._local, "pools", None)
        while pools:
            _, pool = pools.popitem()
            pool.close()

    # -- internals ----------------------------------------------------------------------------------------

    def _fetch(
        self,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        types: Collection[str] | None,
        max_bytes: int,
        truncate: bool,
        raw: bool = False,
    ) -> FetchResult:
        start = time.monotonic()
        deadline = start + self.deadline
        target = _parse_target(url, first=True)
        with _exchange_deadline(deadline) as exchange:
            try:
                result = self._exchange(
                    url, target, start, deadline, etag, last_modified, types, max_bytes, truncate, raw
                )
            except IngestError as exc:
                if exchange.fired and exc.reason != "timeout":
                    # the watchdog cut the socket: whatever broke next (a reset, a bad status line) is that
                    raise TransientError(
                        "timeout", f"{url}: fetch deadline of {self.deadline:g}s passed ({exc.reason})"
                    ) from exc
                raise
            if exchange.fired:  # a body without a length, cut by the watchdog, reads as a normal end
                raise TransientError("timeout", f"{url}: fetch deadline of {self.deadline:g}s passed")
            return result

    def _exchange(
        self,
        url: str,
        target: _Target,
        start: float,
        deadline: float,
        etag: str | None,
        last_modified: str | None,
        types: Collection[str] | None,
        max_bytes: int,
        truncate: bool,
        raw: bool,
    ) -> FetchResult:
        visited = {_visit_key(target.url)}
        redirects = 0
        while True:
            resp = self._request(target, deadline, etag, last_modified)
            try:
                status = resp.status
                if status in REDIRECT_STATUSES:
                    location = resp.headers.get("location")
                    if not location:
                        raise PermanentError(f"http_{status}", f"{target.url}: redirect without Location")
                    next_url = urljoin(target.url, location.strip())
                    redirects += 1
                    nxt = _parse_target(next_url, first=False)
                    if _visit_key(nxt.url) in visited:
                        raise PermanentError("redirect_loop", f"{url}: {nxt.url} seen before")
                    if redirects > self.max_redirects:
                        raise PermanentError("too_many_redirects", f"{url}: more than {self.max_redirects}")
                    visited.add(_visit_key(nxt.url))
                    target = nxt
                    continue
                headers = {k.lower(): v for k, v in resp.headers.items()}
                if status == 304:
                    return FetchResult(
                        url, target.url, 304, headers, _mime(headers), "", "", 0, time.monotonic() - start
                    )
                _raise_for_status(status, headers, target.url)
                return self._read_page(
                    url, target, resp, headers, start, deadline, types, max_bytes, truncate, raw
                )
            finally:
                _release(resp)

    def _request(
        self, target: _Target, deadline: float, etag: str | None, last_modified: str | None
    ) -> urllib3.BaseHTTPResponse:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError("timeout", f"{target.url}: fetch deadline of {self.deadline:.0f}s passed")
        try:
            addrs = self.guard.resolve(target.host, target.port, min(self.connect_timeout, remaining))
        except TransientError as exc:
            if exc.reason != "dns_error":
                raise
            # the resolver could not answer now (EAI_AGAIN: offline, no DNS server): a few quick retries
            raise HostUnreachable("dns_error", exc.detail) from exc
        headers = {
            "Host": target.host_header,
            "User-Agent": self.user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
            "Accept-Encoding": _ACCEPT_ENCODING,
        }
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        last_exc: IngestError | None = None
        # Try each vetted address (dual-stack hosts): connection-level faults move to the next one.
        for ip in addrs[:3]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            pool = self._pool(target, ip)
            timeout = urllib3.Timeout(
                connect=min(self.connect_timeout, remaining), read=min(self.read_timeout, remaining)
            )
            try:
                return pool.urlopen(
                    "GET",
                    target.request_target,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    preload_content=False,
                    decode_content=False,
                    timeout=timeout,
                    assert_same_host=False,
                )
            except Exception as exc:  # noqa: BLE001 - converted right here, at the boundary
                last_exc = _convert(exc, target.url)
                if last_exc.reason not in ("connection_error", "connection_refused"):
                    raise last_exc from exc
        if last_exc is not None:
            raise last_exc
        raise TransientError("timeout", f"{target.url}: fetch deadline of {self.deadline:.0f}s passed")

    def _pool(
        self, target: _Target, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> urllib3.HTTPConnectionPool:
        pools: OrderedDict[Any, urllib3.HTTPConnectionPool] | None = getattr(self._local, "pools", None)
        if pools is None:
            pools = self._local.pools = OrderedDict()
        key = (target.scheme, str(ip), target.port, target.host)
        pool = pools.get(key)
        if pool is not None:
            pools.move_to_end(key)
            return pool
        common: dict[str, Any] = {"maxsize": 1, "block": False, "retries": False}
        # The pool connects to the vetted IP literal, so urllib3 never resolves the name again.
        if target.scheme == "https":
            pool = _HTTPSPool(
                str(ip),
                target.port,
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.ca_certs,
                **common,
            )
        else:
            pool = _HTTPPool(str(ip), target.port, **common)
        pools[key] = pool
        while len(pools) > _POOLS_PER_THREAD:
            pools.popitem(last=False)[1].close()
        return pool

    def _read_page(
        self,
        url: str,
        target: _Target,
        resp: urllib3.BaseHTTPResponse,
        headers: dict[str, str],
        start: float,
        deadline: float,
        types: Collection[str] | None,
        max_bytes: int,
        truncate: bool,
        raw: bool = False,
    ) -> FetchResult:
        declared = _mime(headers)
        if types is not None and declared not in types and declared not in _GENERIC_TYPES:
            raise Skip("not_html", f"{target.url}: content-type {declared}")
        length = headers.get("content-length", "")
        if not truncate and length.isdigit() and int(length) > max_bytes and _identity(headers):
            raise PermanentError("too_large", f"{target.url}: Content-Length {length} > {max_bytes}")
        body = self._read_body(target, resp, headers, deadline, max_bytes, truncate)
        content_type = declared
        if types is not None:
            content_type = _check_html(body, declared, target.url, types)
        charset = _header_charset(headers.get("content-type", ""))
        if raw:
            text, encoding = body.decode("latin-1"), "latin-1"
        else:
            text, encoding = decode_html(body, charset, html=types is not None)
        return FetchResult(
            url,
            target.url,
            resp.status,
            headers,
            content_type or "text/html",
            encoding,
            text,
            len(body),
            time.monotonic() - start,
        )

    def _read_body(
        self,
        target: _Target,
        resp: urllib3.BaseHTTPResponse,
        headers: dict[str, str],
        deadline: float,
        max_bytes: int,
        truncate: bool,
    ) -> bytes:
        decoder = _Decoder(headers.get("content-encoding", ""), target.url)
        out = bytearray()
        sock = _socket_of(resp)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientError("timeout", f"{target.url}: fetch deadline passed while reading")
                if sock is not None:
                    # Each recv waits at most what is left of the deadline, so a trickling body cannot
                    # hold a worker thread past it.
                    sock.settimeout(min(self.read_timeout, remaining))
                raw = resp.read1(_CHUNK, decode_content=False)  # one recv: never waits for a full chunk
                if not raw:
                    out += decoder.flush(max_bytes + 1 - len(out))
                    break
                # Never ask the decompressor for more than one byte past the cap: a bomb stops here.
                out += decoder.feed(raw, max_bytes + 1 - len(out))
                if len(out) > max_bytes:
                    break
        except IngestError:
            raise
        except Exception as exc:  # noqa: BLE001 - converted at the boundary
            raise _convert(exc, target.url) from exc
        if len(out) > max_bytes:
            if not truncate:
                raise PermanentError("too_large", f"{target.url}: body larger than {max_bytes} bytes")
            del out[max_bytes:]
            resp.close()  # the rest is unread, so the connection cannot be reused
        return bytes(out)


# -- URL handling -------------------------------------------------------------------------------------------


def _parse_target(url: str, *, first: bool) -> _Target:
    """Validate and split a URL; a bad first URL is InvalidURL, a bad redirect target is PermanentError."""
    bad_url = InvalidURL if first else PermanentError
    bad_reason = "invalid_url" if first else "bad_redirect"
    if not isinstance(url, str) or not url.strip():
        raise bad_url(bad_reason, "empty URL")
    url = url.strip()
    if any(c in url for c in "\r\n\t\x00 "):
        raise bad_url(bad_reason, f"{url!r}: whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad_url(bad_reason, f"{url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        cls = InvalidURL if first else PermanentError
        raise cls("unsupported_scheme", f"{url!r}: scheme {scheme or '(none)'!r}")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise bad_url(bad_reason, f"{url!r}: no host")
    host = _idna(raw_host.rstrip("."), url, bad_url, bad_reason) if not raw_host.startswith("[") else raw_host
    if ":" in host:  # IPv6 literal
        try:
            host = str(ipaddress.IPv6Address(host.strip("[]").split("%", 1)[0]))
        except ValueError:
            raise bad_url(bad_reason, f"{url!r}: bad IPv6 literal") from None
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = parts.path or "/"
    request_target = path + (f"?{parts.query}" if parts.query else "")
    # Userinfo is dropped on purpose: we never send credentials found in URLs.
    clean = urlunsplit((scheme, host_header, path, parts.query, ""))
    return _Target(clean, scheme, host, port, request_target, host_header)


def _idna(host: str, url: str, bad_url: type[IngestError], bad_reason: str) -> str:
    host = host.lower()
    if host.isascii():
        return host
    try:
        import idna

        return idna.encode(host, uts46=True).decode("ascii")
    except ImportError:  # pragma: no cover
        pass
    except Exception:  # noqa: BLE001 - idna raises several types
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise bad_url(bad_reason, f"{url!r}: host is not a valid IDN") from None


def _visit_key(url: str) -> str:
    return url.split("#", 1)[0]


# -- status and error mapping -------------------------------------------------------------------------------


def _raise_for_status(status: int, headers: dict[str, str], url: str) -> None:
    if 200 <= status < 300:
        return
    reason = f"http_{status}"
    detail = f"{url}: HTTP {status}"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 429 or (status == 503 and retry_after is not None):
        raise RateLimited(reason, detail, retry_after=retry_after)
    if status in TRANSIENT_STATUSES:
        raise TransientError(reason, detail)
    raise PermanentError(reason, detail)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _convert(exc: BaseException, url: str) -> IngestError:
    """Map a urllib3/socket exception to the error tree."""
    if isinstance(exc, IngestError):
        return exc
    detail = f"{url}: {exc}"
    if isinstance(exc, u3e.SSLError):
        return PermanentError("tls_error", detail)
    if isinstance(exc, u3e.NewConnectionError):  # subclass of ConnectTimeoutError: check first
        cause = getattr(exc, "__cause__", None)
        if isinstance(cause, socket.timeout) or "timed out" in str(exc):
            return TransientError("timeout", detail)
        if isinstance(cause, ConnectionRefusedError):
            return HostUnreachable("connection_refused", detail)
        return TransientError("connection_error", detail)
    if isinstance(exc, (u3e.ConnectTimeoutError, u3e.ReadTimeoutError, socket.timeout, TimeoutError)):
        return TransientError("timeout", detail)
    if isinstance(exc, u3e.ProtocolError):
        inner = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(inner, u3e.IncompleteRead) or "IncompleteRead" in str(exc):
            return TransientError("incomplete_body", detail)
        if isinstance(inner, (socket.timeout, TimeoutError)):
            return TransientError("timeout", detail)
        return TransientError("connection_error", detail)
    if isinstance(exc, u3e.DecodeError):
        return PermanentError("decode_error", detail)
    if isinstance(exc, (u3e.HTTPError, ConnectionError, OSError)):
        return TransientError("connection_error", detail)
    if isinstance(exc, (UnicodeError, ValueError)):
        return PermanentError("invalid_url", detail)
    return TransientError("connection_error", f"{detail} ({type(exc).__name__})")


def _release(resp: urllib3.BaseHTTPResponse) -> None:
    try:
        left = resp.length_remaining
        if left is not None and left <= _DRAIN_MAX:
            resp.drain_conn()  # small known remainder (a redirect's body): keep the connection alive
        elif left != 0:
            # Unknown or large remainder: close rather than drain, a hostile server could send forever.
            resp.close()
        resp.release_conn()
    except Exception:  # noqa: BLE001 - cleanup must not mask the real outcome
        pass


def _socket_of(resp: urllib3.BaseHTTPResponse) -> socket.socket | None:
    conn = getattr(resp, "connection", None)
    return getattr(conn, "sock", None)


# -- content-encoding ---------------------------------------------------------------------------------------


def _identity(headers: dict[str, str]) -> bool:
    return headers.get("content-encoding", "").strip().lower() in ("", "identity")


class _Decoder:
    """Incremental Content-Encoding decoder that never produces more than it is asked for."""

    def __init__(self, content_encoding: str, url: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        self.url = url
        self._obj: Any = None
        self._kind = ""
        self._pending = b""
        if not codings:
            return
        if len(codings) > 1:
            raise PermanentError("unsupported_encoding", f"{url}: stacked encodings {content_encoding}")
        kind = codings[0]
        if kind in ("gzip", "x-gzip"):
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif kind == "deflate":
            self._obj = zlib.decompressobj()
        else:
            raise PermanentError("unsupported_encoding", f"{url}: Content-Encoding {kind}")
        self._kind = kind

    def feed(self, data: bytes, limit: int) -> bytes:
        if self._obj is None:
            return data
        try:
            self._pending += data
            out = self._zlib(limit)
            return out
        except zlib.error as exc:
            if self._kind == "deflate" and not getattr(self, "_raw_tried", False):
                # Some servers send raw deflate without the zlib header.
                self._raw_tried = True
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(b"", limit)
            raise PermanentError("decode_error", f"{self.url}: bad {self._kind} body: {exc}") from exc

    def _zlib(self, limit: int) -> bytes:
        out = bytearray()
        data, self._pending = self._pending, b""
        while data and len(out) < limit:
            out += self._obj.decompress(data, limit - len(out))
            data = self._obj.unconsumed_tail
            if self._obj.eof:
                # Concatenated gzip members are legal; anything after is ignored like browsers do.
                rest = self._obj.unused_data
                if rest and self._kind in ("gzip", "x-gzip") and rest[:2] == b"\x1f\x8b":
                    self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest
                else:
                    data = b""
        self._pending = data
        return bytes(out)

    def flush(self, limit: int) -> bytes:
        if self._obj is None:
            return b""
        out = self.feed(b"", limit) if self._pending else b""
        if hasattr(self._obj, "flush") and len(out) < limit:
            out += self._obj.flush()[: max(0, limit - len(out))]
        return out


# -- content type and sniffing -------------------------------------------------------------------------------


def _mime(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


_HTML_SNIFF = re.compile(
    rb"^\s*(?:<!doctype\s+html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style|<title|<b|<body"
    rb"|<br|<p|<!--|<meta|<\?xml[^>]*>\s*(?:<!doctype\s+html|<html))(?:[\s>/]|$)",
    re.IGNORECASE,
)
_BINARY_MAGIC = (
    b"%PDF-",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"BM",
    b"RIFF",
    b"OggS",
    b"\x00\x00\x01\x00",
    b"ID3",
    b"fLaC",
    b"7z\xbc\xaf",
    b"Rar!",
    b"\x7fELF",
    b"wOFF",
    b"wOF2",
    b"%!PS",
)


def _strip_bom(head: bytes) -> bytes:
    for bom in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if head.startswith(bom):
            return head[len(bom) :]
    return head


def looks_like_html(body: bytes) -> bool:
    """WHATWG-style sniff: does the start of ``body`` look like an HTML document?"""
    head = body[:_SNIFF_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            head = head.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(_HTML_SNIFF.match(_strip_bom(head)))


def looks_binary(body: bytes) -> bool:
    """Does ``body`` start like a known binary format or hold NUL bytes (and no UTF-16 BOM)?"""
    head = body[:_SNIFF_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    return head.startswith(_BINARY_MAGIC) or b"\x00" in head


def _check_html(body: bytes, declared: str, url: str, types: Collection[str]) -> str:
    """The content type to report, or Skip when the body is not HTML whatever the header says."""
    if declared in types:
        if looks_binary(body):
            raise Skip("not_html", f"{url}: declared {declared} but the body is binary")
        return declared
    # Missing or generic type: trust the body only if it clearly starts like HTML.
    if body and looks_like_html(body):
        return "text/html"
    raise Skip("not_html", f"{url}: content-type {declared or '(none)'} and the body does not look like HTML")


# -- character encoding -------------------------------------------------------------------------------------

# What browsers actually decode a label as (WHATWG Encoding Standard): pages labelled latin-1 use
# windows-1252 punctuation, "gb2312" pages use GBK/GB18030, "shift_jis" pages use Microsoft's cp932.
_ENCODING_OVERRIDES = {
    "ascii": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "utf-16": "utf-16-le",
}
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE)
_META_SCAN_BYTES = 4096


def normalize_encoding(label: str | None) -> str | None:
    """A Python codec name for a charset label, browser-compatible; None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in ("x-user-defined",):
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    name = _ENCODING_OVERRIDES.get(name, name)
    return codecs.lookup(name).name


def _header_charset(content_type: str) -> str | None:
    m = _HEADER_CHARSET.search(content_type)
    return m.group(1) if m else None


def _bom_encoding(body: bytes) -> tuple[str, int] | None:
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if body.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if body.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    return None


def _meta_charset(body: bytes) -> str | None:
    m = _META_CHARSET.search(body[:_META_SCAN_BYTES])
    if not m:
        return None
    enc = normalize_encoding(m.group(1).decode("ascii", "replace"))
    # A document that can carry an ASCII <meta> cannot be UTF-16; browsers read that label as UTF-8.
    if enc and enc.startswith("utf-16"):
        return "utf-8"
    return enc


def _decodes_cleanly(body: bytes, enc: str) -> str | None:
    """The text if ``body`` decodes as ``enc`` with at most a stray bad byte or two, else None."""
    text = body.decode(enc, errors="replace")
    bad = text.count("\ufffd")
    if bad and bad > max(8, len(body) // 1000):
        return None
    return text


def decode_html(body: bytes, header_charset: str | None = None, *, html: bool = True) -> tuple[str, str]:
    """Decode a page: BOM, then the HTTP charset, then <meta>, then detection. Returns (text, encoding).

    The BOM goes first as in browsers (it cannot be wrong by accident). A declared charset that the bytes
    plainly contradict (many invalid sequences, typically "utf-8" on a windows-1252 page) is skipped.
    """
    bom = _bom_encoding(body)
    if bom:
        enc, skip = bom
        return body[skip:].decode(enc, errors="replace"), enc
    candidates = [normalize_encoding(header_charset)]
    if html:
        candidates.append(_meta_charset(body))
    for enc in candidates:
        if enc:
            text = _decodes_cleanly(body, enc)
            if text is not None:
                return text, enc
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if not html:
        return body.decode("utf-8", errors="replace"), "utf-8"
    enc = _detect(body)
    return body.decode(enc, errors="replace"), enc


# How common each legacy encoding is on the web (roughly, W3Techs): among candidates the detector finds
# equally plausible, the common one is the better bet (windows-1252 over cp1250 for French text).
_WEB_RANK = {
    name: i
    for i, name in enumerate(
        [
            "utf-8",
            "cp1252",
            "cp1251",
            "cp932",
            "gb18030",
            "cp949",
            "iso8859-2",
            "cp1250",
            "euc_jp",
            "big5hkscs",
            "cp1254",
            "cp1256",
            "iso8859-15",
            "cp874",
            "iso8859-9",
            "cp1253",
            "iso8859-7",
            "cp1255",
            "koi8-r",
            "iso8859-5",
            "cp1257",
            "iso8859-13",
            "iso8859-8",
            "iso8859-6",
            "cp1258",
        ]
    )
}
_LATIN = frozenset(
    codecs.lookup(n).name
    for n in [
        "cp1250",
        "cp1252",
        "cp1254",
        "cp1257",
        "cp1258",
        "latin-1",
        "iso8859-2",
        "iso8859-3",
        "iso8859-4",
        "iso8859-9",
        "iso8859-10",
        "iso8859-13",
        "iso8859-14",
        "iso8859-15",
        "iso8859-16",
        "mac-latin2",
        "mac-roman",
        "cp850",
        "cp852",
    ]
)
_LATIN_COMMON = ("cp1252", "iso8859-2", "cp1250", "iso8859-15")
_DETECT_SAMPLE = 64 * 1024
_CHAOS_MARGIN = 0.05


def _oddness(text: str) -> int:
    """Symbols stuck inside words and C1 controls: what a wrong single-byte code page produces."""
    odd = 0
    for word in text.split():
        for ch in word[1:-1]:
            if not (ch.isalnum() or ch in "'-.’·&;=/_:#,()"):
                odd += 1
    return odd + 5 * sum(1 for ch in text if "\x80" <= ch <= "\x9f")


def _detect(body: bytes) -> str:
    """Best guess for an undeclared legacy encoding: charset-normalizer's near-ties, re-ranked."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a dependency of requests
        return "cp1252"
    sample = body[:_DETECT_SAMPLE]
    matches = list(from_bytes(sample))
    if not matches:
        return "cp1252"
    best_chaos = min(m.chaos for m in matches)
    names: list[str] = []
    for m in matches:
        enc = normalize_encoding(m.encoding)
        if enc is not None and m.chaos <= best_chaos + _CHAOS_MARGIN and enc not in names:
            names.append(enc)
    if names and names[0] in _LATIN:
        # The detector confuses members of the Latin family and may not list the common one at all
        # (Polish ISO-8859-2 comes back as ISO-8859-10); let the common ones compete on oddness.
        names += [enc for enc in _LATIN_COMMON if enc not in names]
    candidates: list[tuple[int, int, int, str]] = []
    for order, enc in enumerate(names):
        text = sample.decode(enc, errors="replace")
        candidates.append((_oddness(text) + 5 * text.count("\ufffd"), _WEB_RANK.get(enc, 99), order, enc))
    return min(candidates)[3] if candidates else "cp1252"
