"""Canonical form of a submitted URL, and the reasons a URL is refused.

Two spellings of one page must give one canonical URL (and so one record id): lowercase scheme and host,
IDN host in punycode, default port and trailing host dot dropped, fragment dropped, tracking parameters
removed, the rest of the query sorted, percent-encoding and dot segments normalized. The record id is a
hash of this canonical form.

We validate (and give each refusal its own reason) ourselves, because that is where the reasons are; the
encoding work (percent-encoding, query sorting, dot segments, IDNA) is done by ``w3lib.url.canonicalize_url``,
the canonicalizer Scrapy uses.

Reasons: ``empty_url``, ``url_too_long``, ``control_character``, ``not_utf8``, ``invalid_url``,
``unsupported_scheme``, ``whitespace_in_url``, ``missing_host``, ``credentials_in_url``, ``invalid_port``,
``invalid_host``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from urllib.parse import unquote, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

from ingest_core.errors import InvalidURL

TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "yclid", "_ga", "_gl",
        "igshid", "ref_src", "ocid", "twclid", "ttclid", "li_fat_id", "_hsenc", "_hsmi", "mkt_tok", "vero_id",
        "oly_anon_id", "oly_enc_id", "rb_clickid", "s_cid", "wt_mc", "cmpid", "spm",
    }
)  # fmt: skip
"""Query parameters that only track the click, never select content (compared lower-cased)."""

TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_")
"""Parameter-name prefixes that only track (Google/Matomo/Piwik/HubSpot campaign tags)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_RE = re.compile(r"^[a-z0-9.\-_]+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_SPACE_RE = re.compile(r"\s")
_PLAIN_PATH_RE = re.compile(r"^/[A-Za-z0-9\-._~/]*$")
_PLAIN_PAIR_RE = re.compile(r"^[A-Za-z0-9\-._~]+=[A-Za-z0-9\-._~]*$")


def _is_tracking(name: str, extra: frozenset[str]) -> bool:
    lowered = unquote(name).lower()
    return lowered in TRACKING_PARAMS or lowered in extra or lowered.startswith(TRACKING_PREFIXES)


def _strip_tracking(query: str, extra: frozenset[str]) -> str:
    # Work on the raw pairs so a kept parameter keeps its exact encoding (w3lib normalizes it next).
    if not query:
        return ""
    return "&".join(
        pair for pair in query.split("&") if pair and not _is_tracking(pair.split("=", 1)[0], extra)
    )


@functools.lru_cache(maxsize=65536)
def _host(hostname: str) -> str:
    """The host in canonical spelling (punycode, lowercase, IPv6 in brackets) or ``InvalidURL``."""
    host = hostname.rstrip(".")
    if not host:
        raise InvalidURL("missing_host", "no host in URL")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise InvalidURL("invalid_host", f"host {hostname!r}: {exc}") from None
    if not _HOST_RE.match(host) or ".." in host or host.startswith(("-", ".")):
        raise InvalidURL("invalid_host", f"host {host!r}")
    return host


def canonicalize(url: str, *, max_length: int = 2048, strip_params: frozenset[str] = frozenset()) -> str:
    """Return the canonical URL or raise ``InvalidURL`` with a specific reason.

    ``strip_params`` names extra parameters to drop, on top of ``TRACKING_PARAMS``/``TRACKING_PREFIXES``.
    """
    if not isinstance(url, str):
        raise InvalidURL("invalid_url", f"not a string: {type(url).__name__}")
    url = url.strip()
    if not url:
        raise InvalidURL("empty_url", "empty")
    if len(url) > max_length:
        raise InvalidURL("url_too_long", f"{len(url)} > {max_length} characters")
    if _SURROGATE_RE.search(url):
        # Undecodable input bytes arrive as lone surrogates (surrogateescape): never guess an encoding.
        raise InvalidURL("not_utf8", "bytes that are not UTF-8")
    if _CONTROL_RE.search(url):
        raise InvalidURL("control_character", "control character in URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURL("invalid_url", str(exc)) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURL("invalid_url", "not an absolute URL (expected http:// or https://)")
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL("unsupported_scheme", f"scheme {scheme!r} is not http or https")
    if not url[len(scheme) :].startswith("://"):
        raise InvalidURL("invalid_url", f"expected {scheme}:// at the start")
    if _SPACE_RE.search(url):
        raise InvalidURL("whitespace_in_url", "space inside URL (encode it as %20)")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("credentials_in_url", "user:password@ in URL is not accepted")
    try:
        hostname = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidURL("invalid_port" if "port" in str(exc).lower() else "invalid_url", str(exc)) from None
    if not hostname:
        raise InvalidURL("missing_host", "no host in URL")
    host = _host(hostname)
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = _strip_tracking(parts.query, strip_params)
    path = parts.path or "/"
    if _is_plain(path, query):
        # nothing for w3lib to encode or reorder (it would return the same string): most URLs, and w3lib
        # is most of the cost of a submission
        return f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"
    try:
        return canonicalize_url(urlunsplit((scheme, netloc, path, query, "")))
    except (ValueError, UnicodeError) as exc:
        raise InvalidURL("invalid_url", str(exc)) from None


def _is_plain(path: str, query: str) -> bool:
    """Path and query made only of unreserved characters, the query's pairs already sorted."""
    if not _PLAIN_PATH_RE.match(path) or "/." in path:  # dot segments: w3lib resolves them
        return False
    if not query:
        return True
    pairs = query.split("&")
    return all(_PLAIN_PAIR_RE.match(p) for p in pairs) and pairs == sorted(
        pairs, key=lambda p: p.split("=", 1)
    )


def url_id(canonical_url: str) -> str:
    """Stable record id: first 128 bits of SHA-256 of the canonical URL, in hex."""
    return hashlib.sha256(canonical_url.encode("utf-8")).hexdigest()[:32]
