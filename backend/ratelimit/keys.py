"""Which client a request comes from: the socket peer, or X-Forwarded-For behind trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Parse TRUSTED_PROXIES entries (CIDRs or single addresses); raise ValueError on a bad one."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _trusted(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address.

    The socket peer, unless it is a trusted proxy: then the right-most address in
    X-Forwarded-For that is not itself a trusted proxy. Entries left of that one were
    written by the client and are never believed, so a client cannot choose its key.
    """
    host = peer or "unknown"
    if not trusted or not _trusted(host, trusted):
        return host
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return _normalise(hop)
        host = hop
    return host


def _normalise(hop: str) -> str:
    # A hop that is not an IP address (garbage, or "unknown") is still a distinct key,
    # but bounded so a header cannot grow the bucket table's keys without limit.
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return hop[:64]
