"""SSRF guard: decide which IP addresses a fetch may connect to, and resolve hosts to vetted addresses.

The fetcher resolves a host once with :meth:`NetGuard.resolve`, checks every address, and then connects to
one of those exact addresses (see ``fetch.py``), so a DNS-rebinding attacker cannot answer a second lookup
differently. Hosts written as integers, octal, hex or short dotted forms (``2130706433``, ``0177.1``,
``0x7f.0.0.1``, ``127.1``) are parsed the way browsers and ``inet_aton`` parse them, so they cannot slip
past as "names".
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Sequence

from ingest_core.errors import BlockedAddress, PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``resolver(host, port) -> [ip, ...]``; the default wraps ``socket.getaddrinfo``."""

# Python's is_global/is_private tables changed between 3.11 and 3.13, so the refused ranges are spelled
# out here instead of trusting one interpreter's notion of "global".
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. 255.255.255.255 broadcast
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated); embedded v4 checked separately too
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")

_IPV4_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """Parse an IPv4 host in any form ``inet_aton`` and browsers accept, or None if it is not one.

    ``127.1``, ``2130706433``, ``0177.0.0.1`` and ``0x7f.0x0.0x0.0x1`` all mean 127.0.0.1 to a resolver;
    ``ipaddress`` rejects them, so without this they would be treated as names.
    """
    host = host.lower().rstrip(".")
    parts = host.split(".")
    if not host or len(parts) > 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    values: list[int] = []
    for p in parts:
        if p.startswith("0x"):
            values.append(int(p[2:] or "0", 16))
        elif len(p) > 1 and p.startswith("0"):
            if any(c in "89" for c in p):
                return None
            values.append(int(p, 8))
        else:
            values.append(int(p))
    # The last part fills all remaining bytes: a.b.c.d, a.b.(16 bits), a.(24 bits), (32 bits).
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for i, v in enumerate(head):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host denotes when it is an IP literal (any IPv4 form, or IPv6 with/without [])."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return None
    return parse_ipv4_loose(h)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def is_public(ip: IPAddress) -> bool:
    """True when ``ip`` is an ordinary public unicast address (and so is anything it embeds)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _BLOCKED_V4)
    embedded = _embedded_v4(ip)
    if embedded is not None:
        # Mapped, NAT64 and 6to4 addresses reach the IPv4 address they carry.
        return is_public(embedded)
    return not any(ip in net for net in _BLOCKED_V6)


def _default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in seen:
            seen.append(addr)
    return seen


class NetGuard:
    """Refuses non-public addresses unless private networks are allowed, wholly or by CIDR."""

    def __init__(
        self,
        *,
        allow_private_networks: bool = False,
        allow_networks: Sequence[str] = (),
        resolver: Resolver | None = None,
    ) -> None:
        self.allow_private_networks = allow_private_networks
        try:
            self.allow_networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allow_networks)
        except ValueError as exc:
            raise ValueError(f"allow_networks: {exc}") from None
        self._resolver = resolver or _default_resolver

    def is_allowed(self, ip: IPAddress) -> bool:
        """May we connect to ``ip``? IPv4-mapped IPv6 is judged as the IPv4 address it carries."""
        if self.allow_private_networks:
            return True
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        for cand in candidates:
            if any(cand.version == net.version and cand in net for net in self.allow_networks):
                return True
        return is_public(ip)

    def check(self, ip: IPAddress, host: str = "") -> None:
        """Raise BlockedAddress unless ``ip`` may be fetched."""
        if not self.is_allowed(ip):
            shown = f"{host} -> {ip}" if host and host != str(ip) else str(ip)
            raise BlockedAddress("blocked_address", f"{shown} is not a public address")

    def resolve(self, host: str, port: int, timeout: float) -> list[IPAddress]:
        """Resolve ``host`` and vet every address; the caller must connect only to the ones returned.

        Any refused address fails the whole host: a name that answers with both public and private
        addresses is either misconfigured or probing us.
        """
        literal = parse_ip_literal(host)
        if literal is not None:
            self.check(literal, host)
            return [literal]
        raw = _resolve_with_timeout(self._resolver, host, port, timeout)
        addrs: list[IPAddress] = []
        for a in raw:
            try:
                addrs.append(ipaddress.ip_address(a))
            except ValueError:
                continue
        if not addrs:
            raise PermanentError("dns_error", f"{host}: no usable address")
        for ip in addrs:
            self.check(ip, host)
        return addrs


# getaddrinfo() answers permanent failure with these; EAI_AGAIN and the rest may pass.
_EAI_PERMANENT = {
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),
        getattr(socket, "EAI_ADDRFAMILY", None),
        getattr(socket, "EAI_SERVICE", None),
        getattr(socket, "EAI_FAIL", None),
    )
    if code is not None
}


def _resolve_with_timeout(resolver: Resolver, host: str, port: int, timeout: float) -> list[str]:
    # getaddrinfo() has no timeout of its own; a daemon thread keeps a hung resolver from eating the
    # whole fetch deadline (the thread finishes on its own when the system resolver gives up).
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = resolver(host, port)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="netguard-dns", daemon=True)
    t.start()
    t.join(max(timeout, 0.001))
    if t.is_alive():
        raise TransientError("timeout", f"DNS lookup of {host} took longer than {timeout:.1f}s")
    err = box.get("error")
    if isinstance(err, socket.gaierror):
        cls = PermanentError if err.errno in _EAI_PERMANENT else TransientError
        raise cls("dns_error", f"{host}: {err}") from err
    if isinstance(err, UnicodeError):
        raise PermanentError("dns_error", f"{host}: {err}") from err
    if isinstance(err, BaseException):
        raise err
    return list(box["result"])  # type: ignore[arg-type]
