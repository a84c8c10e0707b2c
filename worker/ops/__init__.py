"""Operations: metrics exporter, Flower launcher, dead letters, export, live stats. Not used by workers."""

from __future__ import annotations

import ipaddress


def is_loopback(address: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere
