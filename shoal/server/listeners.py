"""The tracker's listening sockets: what each serves, where, and whether it still does."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Listener:
    """One bound socket: what it serves and where."""

    kind: str  # "http", "udp" or "admin"
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind}://{host}:{self.port}/announce"


def _bound(datagram: bool, address: Any) -> tuple[bool, str, int]:
    host = str(address[0]).split("%")[0]
    with contextlib.suppress(ValueError):
        host = ipaddress.ip_address(host).compressed
    return datagram, host, int(address[1])


def listener_health(
    listeners: list[Listener],
    servers: list[asyncio.Server],
    transports: list[asyncio.BaseTransport],
) -> list[tuple[Listener, bool]]:
    """Each listener and whether a serving TCP server or an open UDP socket is bound to its
    address (a closed server has no sockets, a closed transport is closing)."""
    live: set[tuple[bool, str, int]] = set()
    for server in servers:
        if server.is_serving():
            live.update(_bound(False, sock.getsockname()) for sock in server.sockets)
    for transport in transports:  # UDP endpoints, and TCP listeners served in C
        sockname = transport.get_extra_info("sockname")
        sock = transport.get_extra_info("socket")
        udp = sock is None or sock.type == socket.SOCK_DGRAM
        if not transport.is_closing() and sockname:
            live.add(_bound(udp, sockname))
    return [(x, _bound(x.kind == "udp", (x.host, x.port)) in live) for x in listeners]


def listener_address(listener: Listener) -> str:
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    return f"{host}:{listener.port}"

