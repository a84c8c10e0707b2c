"""The SSRF guard: which addresses are refused, in every spelling, and how resolution fails."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from ingest_core.errors import BlockedAddress, PermanentError, TransientError
from ingest_core.netguard import NetGuard, is_public, parse_ip_literal, parse_ipv4_loose

BLOCKED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "192.0.2.1",
    "192.0.0.8",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "fec0::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::a00:1",
    "2002:7f00:1::1",
    "2001::1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("addr", BLOCKED)
def test_non_public_address_is_refused(addr: str) -> None:
    """Private, loopback, link-local, shared, multicast, reserved and unspecified addresses are blocked."""
    with pytest.raises(BlockedAddress) as info:
        NetGuard().check(ipaddress.ip_address(addr))
    assert info.value.reason == "blocked_address"


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_address_is_allowed(addr: str) -> None:
    """Ordinary public unicast addresses (and mapped forms of them) pass."""
    assert is_public(ipaddress.ip_address(addr))
    NetGuard().check(ipaddress.ip_address(addr))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("10.0.0.1.", "10.0.0.1"),
    ],
)
def test_loose_ipv4_forms_parse_to_the_address_a_resolver_would_use(host: str, expected: str) -> None:
    """Integer, octal, hex and short dotted IPv4 hosts are recognised as the address they denote."""
    assert parse_ipv4_loose(host) == ipaddress.IPv4Address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "127.1",
        "0251.0376.0251.0376",
        "[::1]",
        "[::ffff:7f00:1]",
        "[::ffff:127.0.0.1]",
    ],
)
def test_loose_ip_host_is_blocked_without_dns(host: str) -> None:
    """A host written as any IP form is checked as that IP, never passed to DNS as a name."""

    def resolver(h: str, port: int) -> list[str]:
        raise AssertionError(f"DNS asked for {h}")

    with pytest.raises(BlockedAddress):
        NetGuard(resolver=resolver).resolve(host, 80, timeout=1)


@pytest.mark.parametrize("host", ["1.2.3.4.example.com", "123.com", "0x.example", "1.2.3.4.5", "09.1.1.1"])
def test_names_that_merely_look_numeric_are_not_ip_literals(host: str) -> None:
    """Names with a non-numeric label, too many parts or invalid octal are names, not addresses."""
    assert parse_ip_literal(host) is None


def test_allow_networks_permits_only_those_cidrs() -> None:
    """allow_networks opens the listed CIDRs and nothing else."""
    guard = NetGuard(allow_networks=["127.0.0.0/8"])
    guard.check(ipaddress.ip_address("127.0.0.5"))
    guard.check(ipaddress.ip_address("::ffff:127.0.0.5"))
    with pytest.raises(BlockedAddress):
        guard.check(ipaddress.ip_address("10.0.0.1"))
    with pytest.raises(BlockedAddress):
        guard.check(ipaddress.ip_address("169.254.169.254"))


def test_allow_private_networks_lifts_the_guard() -> None:
    """allow_private_networks=True lets every address through."""
    guard = NetGuard(allow_private_networks=True)
    for addr in BLOCKED:
        guard.check(ipaddress.ip_address(addr))


def test_bad_allow_networks_entry_is_a_value_error() -> None:
    """A malformed CIDR is rejected at construction."""
    with pytest.raises(ValueError, match="allow_networks"):
        NetGuard(allow_networks=["not-a-cidr"])


def test_name_resolving_to_any_private_address_is_refused() -> None:
    """A name answering with a public and a private address is refused as a whole."""
    guard = NetGuard(resolver=lambda h, p: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(BlockedAddress, match="10.0.0.7"):
        guard.resolve("mixed.example", 80, timeout=1)


def test_resolve_returns_the_vetted_addresses() -> None:
    """The addresses returned are exactly the ones checked, for the caller to connect to."""
    guard = NetGuard(resolver=lambda h, p: ["93.184.216.34", "2606:4700:4700::1111"])
    assert [str(a) for a in guard.resolve("ok.example", 80, timeout=1)] == [
        "93.184.216.34",
        "2606:4700:4700::1111",
    ]


def test_unknown_name_is_a_permanent_dns_error() -> None:
    """NXDOMAIN (EAI_NONAME) is permanent: retrying will not make the name exist."""

    def resolver(h: str, p: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(PermanentError) as info:
        NetGuard(resolver=resolver).resolve("nx.invalid", 80, timeout=1)
    assert info.value.reason == "dns_error"


def test_temporary_resolver_failure_is_a_transient_dns_error() -> None:
    """EAI_AGAIN (resolver temporarily failing) is transient."""

    def resolver(h: str, p: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(TransientError) as info:
        NetGuard(resolver=resolver).resolve("flaky.example", 80, timeout=1)
    assert info.value.reason == "dns_error"


def test_hung_resolver_times_out() -> None:
    """A resolver that never answers is cut off at the timeout with a transient timeout."""

    def resolver(h: str, p: int) -> list[str]:
        time.sleep(3)
        return ["93.184.216.34"]

    with pytest.raises(TransientError) as info:
        NetGuard(resolver=resolver).resolve("slow.example", 80, timeout=0.2)
    assert info.value.reason == "timeout"
