"""Test-wide guards and fixtures: no test may leave 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "", None}


def _check(address: Any) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise RuntimeError(
                    f"test tried to reach {host!r}: tests stay on 127.0.0.1"
                ) from None
            return
        if not ip.is_loopback:
            raise RuntimeError(f"test tried to reach {host}: tests stay on 127.0.0.1")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    # Name lookups would leave the machine before any connect() could be refused.
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOCAL_NAMES:
        try:
            if not ipaddress.ip_address(name).is_loopback:
                raise RuntimeError(f"test tried to reach {name}: tests stay on 127.0.0.1")
        except ValueError:
            raise RuntimeError(f"test tried to resolve {name!r}: tests stay on 127.0.0.1") from None
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _no_internet() -> Iterator[None]:
    """Fail any connection to a non-loopback address (asyncio uses connect_ex / sock_connect)."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.getaddrinfo = _real_getaddrinfo
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
