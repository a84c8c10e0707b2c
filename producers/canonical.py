"""Canonical form of a submitted URL, and the reasons a URL is refused.

Two spellings of one page must give one canonical URL (and so one record id): lowercase scheme and host,
IDN host in punycode, default port dropped, fragment dropped, tracking parameters removed, the rest of the
query sorted. The record id is a hash of this canonical form.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from worker.errors import InvalidURL

TRACKING_PARAMS: frozenset[str] = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "yclid", "_ga", "igshid", "ref_src", "ocid"}
)
"""Query parameters that only track the click, never select content."""

TRACKING_PREFIXES: tuple[str, ...] = ("utm_",)
"""Parameter-name prefixes that only track."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_RE = re.compile(r"^[a-z0-9.\-_\[\]:]+$")


def _is_tracking(name: str, extra: frozenset[str]) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered in extra or lowered.startswith(TRACKING_PREFIXES)


def canonicalize(url: str, *, max_length: int = 2048, strip_params: frozenset[str] = frozenset()) -> str:
    """Return the canonical URL or raise ``InvalidURL`` with a specific reason."""
    if not isinstance(url, str):
        raise InvalidURL("invalid_url", "not a string")
    url = url.strip()
    if not url:
        raise InvalidURL("empty_url", "empty")
    if len(url) > max_length:
        raise InvalidURL("url_too_long", f"{len(url)} > {max_length} characters")
    if any(ch in url for ch in "\x00\r\n\t "):
        raise InvalidURL("invalid_url", "whitespace or control character in URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURL("invalid_url", str(exc)) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURL("invalid_url", "no scheme (expected http:// or https://)")
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL("unsupported_scheme", f"scheme {scheme!r} is not http or https")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidURL("invalid_url", str(exc)) from None
    if not host:
        raise InvalidURL("missing_host", "no host in URL")
    host = host.rstrip(".")
    if parts.username or parts.password:
        raise InvalidURL("credentials_in_url", "user:password@ in URL is not accepted")
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if not is_ip:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise InvalidURL("invalid_host", f"host {host!r}: {exc}") from None
        if not _HOST_RE.match(host) or ".." in host or host.startswith(("-", ".")):
            raise InvalidURL("invalid_host", f"host {host!r}")
    elif ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(unquote(parts.path), safe="/:@!$&'()*+,;=-._~%") or "/"
    query_items = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k, strip_params)
    ]
    query = urlencode(sorted(query_items), doseq=True)
    return urlunsplit((scheme, netloc, path, query, ""))


def url_id(canonical_url: str) -> str:
    """Stable record id: first 128 bits of SHA-256 of the canonical URL, in hex."""
    return hashlib.sha256(canonical_url.encode("utf-8")).hexdigest()[:32]
