"""Loopback ports for the servers and clients the tests start as other processes (redis,
PostgreSQL, nginx, BitTorrent clients, ``python -m shoal``), which must be told a port
before they bind it.

A port is probed free and handed to the process, which binds it a moment later. With the
suite split over parallel pytest processes (``make test`` runs two engine passes, each
over several xdist workers), two processes probing the kernel's ephemeral range could be
handed the same port in that moment, and an outgoing connection (which takes an ephemeral
port) could take it too. So each pytest process hands out ports only from a block of its
own, below the ephemeral range (32768-60999 on Linux): block number 8 times the engine
pass (1 for the SHOAL_ENGINE=python pass, else 0) plus the xdist worker number. Ports bound
inside one test process (the in-process trackers) bind port 0 and are not concerned.
"""

from __future__ import annotations

import os
import socket

FIRST = 12_000  # blocks span 12000-21999; a Redis Cluster node also needs port + 10000
BLOCKS = 16
BLOCK = 10_000 // BLOCKS

_block: int | None = None
_next = 0
_handed_out: set[int] = set()


def block_number() -> int:
    """This pytest process's block: its engine pass and its xdist worker (read once: a
    run-once test changes SHOAL_ENGINE while it runs, see tests/conftest.py)."""
    global _block
    if _block is None:
        run = 1 if os.environ.get("SHOAL_ENGINE") == "python" else 0
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
        number = int(worker[2:]) if worker[2:].isdigit() else 0
        _block = (run * 8 + number % 8) % BLOCKS
    return _block


def can_bind(family: socket.AddressFamily, kind: socket.SocketKind, port: int) -> bool:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ipv6_loopback() -> bool:
    """Whether sockets can bind to ::1 here (some containers have no IPv6 at all)."""
    return socket.has_ipv6 and can_bind(socket.AF_INET6, socket.SOCK_STREAM, 0)


def free_port(*, also: int | None = None) -> int:
    """A port of this process's block free now for TCP and UDP on 127.0.0.1 (and on ::1
    when there is one), never handed out before by this process while the block has
    others; with ``also``, port + ``also`` must be free for TCP too (a Redis Cluster
    node's bus)."""
    global _next
    start = FIRST + block_number() * BLOCK
    _next = max(_next, start)
    checks = [(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM)]
    if ipv6_loopback():
        checks += [(socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM)]
    for _ in range(2 * BLOCK):
        port = _next
        _next = start + (_next - start + 1) % BLOCK
        if port in _handed_out:
            if len(_handed_out) >= BLOCK:
                _handed_out.clear()  # every port of the block used once: reuse, still probed
            continue
        if all(can_bind(family, kind, port) for family, kind in checks) and (
            also is None or can_bind(socket.AF_INET, socket.SOCK_STREAM, port + also)
        ):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"found no free loopback port in {start}-{start + BLOCK - 1}")
