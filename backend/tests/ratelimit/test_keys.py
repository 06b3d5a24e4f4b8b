"""Client addresses: the socket peer, X-Forwarded-For only from trusted proxies, no spoofing."""

from __future__ import annotations

import pytest

from backend.ratelimit.keys import MAX_HOP_CHARS, client_ip, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8", "192.0.2.1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # No trusted proxy configured: the header is never read.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        ("127.0.0.1", ["198.51.100.1"], "127.0.0.1"),
    ],
)
def test_without_trusted_proxies_the_peer_is_the_client(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert client_ip(peer, forwarded, ()) == expected


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # A client that is not a proxy sends the header: ignored.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        ("203.0.113.5", ["10.0.0.1"], "203.0.113.5"),
        # Through one trusted proxy: the address it appended.
        ("10.0.0.1", ["203.0.113.5"], "203.0.113.5"),
        # Spoof: the client sent its own X-Forwarded-For; the proxy appended the real one.
        ("10.0.0.1", ["198.51.100.1, 203.0.113.5"], "203.0.113.5"),
        ("10.0.0.1", ["1.1.1.1, 2.2.2.2, 203.0.113.5"], "203.0.113.5"),
        # Spoof that names a trusted proxy to hide behind: still the right-most untrusted hop.
        ("10.0.0.1", ["10.9.9.9, 203.0.113.5"], "203.0.113.5"),
        # Two trusted proxies in a chain: skip them, right to left.
        ("10.0.0.1", ["203.0.113.5, 10.0.0.2"], "203.0.113.5"),
        ("192.0.2.1", ["198.51.100.1, 203.0.113.5, 10.0.0.7"], "203.0.113.5"),
        # Several header lines are one list, in order.
        ("10.0.0.1", ["198.51.100.1", "203.0.113.5"], "203.0.113.5"),
        # Everyone is a trusted proxy: the left-most is the client.
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        # A trusted proxy that sent no header (health checks, direct calls): itself.
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", [" , "], "10.0.0.1"),
        # IPv6, ports and brackets are normalised to one spelling per address.
        ("fd00::1", ["2001:DB8:0:0::7"], "2001:db8::7"),
        ("10.0.0.1", ["203.0.113.5:4711"], "203.0.113.5"),
        ("10.0.0.1", ["[2001:db8::7]:4711"], "2001:db8::7"),
        ("::ffff:10.0.0.1", ["::ffff:203.0.113.5"], "203.0.113.5"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert client_ip(peer, forwarded, PROXIES) == expected


def test_a_garbage_hop_is_a_bounded_key_of_its_own() -> None:
    assert client_ip("10.0.0.1", ["unknown"], PROXIES) == "unknown"
    long_hop = "x" * 500
    assert client_ip("10.0.0.1", [long_hop], PROXIES) == "x" * MAX_HOP_CHARS


def test_a_missing_peer_is_one_shared_key() -> None:
    assert client_ip(None, ["203.0.113.5"], PROXIES) == "unknown"


def test_bad_trusted_proxies_are_refused() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        parse_networks(["not-a-network"])
