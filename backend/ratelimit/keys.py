"""Which client a request comes from: the socket peer, or X-Forwarded-For behind trusted proxies."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A forwarded hop that is not an address ("unknown", an obfuscated RFC 7239 name, garbage)
# is still a distinct key, but bounded so a header cannot grow keys without limit.
MAX_HOP_CHARS = 64


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Parse TRUSTED_PROXIES entries (CIDRs or single addresses); raise ValueError on a bad one."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address.

    The socket peer, unless it is a trusted proxy: then the right-most address in
    X-Forwarded-For that is not itself a trusted proxy. Entries left of that one were
    written by the client and are never believed, so a client cannot choose its key.
    When every hop is trusted, the left-most one is the client.
    """
    host = _normalise(peer) if peer else "unknown"
    if not trusted or not _trusted(host, trusted):
        return host
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        address = _normalise(hop)
        if not _trusted(address, trusted):
            return address
        host = address
    return host


@functools.lru_cache(maxsize=4096)
def client_key(client: str, ipv6_prefix: int = 64) -> str:
    """The bucket key of a client address: an IPv6 one stands for its /`ipv6_prefix` network.

    One subscriber usually gets a whole /64 (or more), so keyed per address an IPv6 client
    could take a fresh bucket for every request. IPv4 addresses and non-address hops are
    keys as they are; a prefix of 128 keys every IPv6 address on its own.
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if not isinstance(address, ipaddress.IPv6Address) or ipv6_prefix >= 128:
        return client
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))


def _trusted(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


@functools.lru_cache(maxsize=4096)  # the same peers and hops recur; parsing costs ~4 µs
def _normalise(hop: str) -> str:
    """One spelling per address: ports dropped, IPv4-mapped IPv6 as IPv4, IPv6 compressed."""
    address = _parse(hop)
    if address is None:
        return hop[:MAX_HOP_CHARS]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _parse(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Some proxies append the port: "203.0.113.7:4711" or "[2001:db8::1]:4711".
    candidates = [hop]
    if hop.startswith("[") and "]" in hop:
        candidates.append(hop[1 : hop.index("]")])
    elif hop.count(":") == 1:
        candidates.append(hop.split(":", 1)[0])
    for candidate in candidates:
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None
