"""Several ``shoal serve`` processes sharing their swarms through one real redis-server:
a peer announced to one node is handed out by another, completions and UDP connection ids
cross nodes, and a Redis outage gives clean failure replies and /health 503, then heals
with no restart."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.redis_server import RedisServer, free_port
from support.serve import start_serve

from shoal.protocol.bencode import decode

WAIT = 20.0
PROTOCOL_ID = 0x41727101980
TORRENT = bytes(range(20))
LOCALHOST = socket.inet_aton("127.0.0.1")


def tcp_udp_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_for(what: str, check: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Node:
    """``python -m shoal serve`` on 127.0.0.1 with its swarms in Redis, admin on."""

    def __init__(self, tmp: Path, name: str, redis_url: str, namespace: str,
                 timeout: float = 2.0) -> None:
        self.port = tcp_udp_port()
        self.admin_port = free_port()
        self.config = tmp / f"{name}.toml"
        self.config.write_text("\n".join([
            "[storage]", "persist = false", 'peers = "redis"', f'redis_url = "{redis_url}"',
            f'redis_namespace = "{namespace}"', f"redis_timeout = {timeout}",
            "[admin]", f"port = {self.admin_port}", "dashboard = false",
        ]) + "\n")
        self.log = tmp / f"{name}.log"
        self.proc = start_serve(self.config, self.port, self.log, ready_port=self.admin_port,
                                wait=WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)

    def get(self, path: str, **params: str | bytes | int) -> dict[bytes, Any]:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=WAIT) as reply:
            found = decode(reply.read())
        assert isinstance(found, dict)
        return found

    def announce(self, n: int, **params: str | int) -> dict[bytes, Any]:
        base: dict[str, str | bytes | int] = {
            "info_hash": TORRENT, "peer_id": f"-SH0100-{n:012d}".encode(),
            "port": 10000 + n, "uploaded": 0, "downloaded": 0, "left": 100,
        }
        base.update(params)
        return self.get("/announce", **base)

    def scrape(self) -> tuple[int, int, int]:
        entry = self.get("/scrape", info_hash=TORRENT)[b"files"][TORRENT]
        return entry[b"complete"], entry[b"incomplete"], entry[b"downloaded"]

    def admin(self, path: str) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=WAIT) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)


def udp_connect(sock: socket.socket, port: int) -> int:
    sock.sendto(struct.pack(">QII", PROTOCOL_ID, 0, 1), ("127.0.0.1", port))
    data = sock.recv(64)
    return int(struct.unpack(">IIQ", data)[2])


def udp_announce(sock: socket.socket, port: int, conn: int, n: int, left: int = 100,
                 event: int = 0) -> bytes:
    packet = struct.pack(">QII20s20sQQQIIIiH", conn, 1, 7, TORRENT,
                         f"-UD0100-{n:012d}".encode(), 0, left, 0, event, 0, 0, 50, 20000 + n)
    sock.sendto(packet, ("127.0.0.1", port))
    return sock.recv(2048)


def udp_peers(reply: bytes) -> set[bytes]:
    action, _, _, _, _ = struct.unpack_from(">IIIII", reply)
    assert action == 1, reply
    return {reply[i : i + 6] for i in range(20, len(reply), 6)}


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def namespace() -> str:
    return f"nodes-{uuid.uuid4().hex[:10]}"


def test_two_nodes_share_swarms_completions_and_udp_connection_ids(
    tmp_path: Path, redis_server: RedisServer, nodes: list[Node]
) -> None:
    ns = namespace()
    a = Node(tmp_path, "a", redis_server.url, ns)
    nodes.append(a)
    b = Node(tmp_path, "b", redis_server.url, ns)
    nodes.append(b)
    a.announce(1, event="started")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(WAIT)
        # A connection id from node A is accepted by node B.
        conn = udp_connect(udp, a.port)
        peers = udp_peers(udp_announce(udp, b.port, conn, 2, event=2))
        # The peer announced to A over HTTP is handed out by B over UDP.
        assert peers == {LOCALHOST + (10001).to_bytes(2, "big")}
        udp_announce(udp, b.port, conn, 2, left=0, event=1)  # completed, on B
    assert a.scrape() == (1, 1, 1)
    status, stats = a.admin("/stats")
    assert status == 200 and stats["store"]["kind"] == "redis"
    assert stats["totals"]["torrents"] == 1
    status, stats = b.admin("/stats")
    assert (stats["totals"]["seeders"], stats["totals"]["leechers"]) == (1, 1)


def test_redis_outage_gives_failure_replies_and_health_503_then_heals(
    tmp_path: Path, nodes: list[Node]
) -> None:
    server = RedisServer(tmp_path / "outage")
    try:
        node = Node(tmp_path, "a", server.url, namespace(), timeout=0.5)
        nodes.append(node)
        assert node.announce(1)[b"incomplete"] == 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(WAIT)
            conn = udp_connect(udp, node.port)
            outcomes: list[str] = []
            stop = threading.Event()

            def traffic() -> None:
                """Announces all through the outage; each must be answered (the client's
                timeout is generous: only a hung request would reach it)."""
                deadline = time.monotonic() + 60
                n = 100
                while not stop.is_set() and time.monotonic() < deadline:
                    n += 1
                    try:
                        reply = node.announce(n % 50 + 100)
                        outcomes.append(reply.get(b"failure reason", b"ok").decode())
                    except Exception as exc:
                        outcomes.append(f"error: {exc!r}")
                    time.sleep(0.01)

            thread = threading.Thread(target=traffic, daemon=True)
            thread.start()
            try:
                wait_for("some answered announces", lambda: len(outcomes) > 5)
                server.stop()
                _, health = wait_for("/health to say 503",
                                     lambda: (h := node.admin("/health"))[0] == 503 and h)
                assert health["store"]["kind"] == "redis" and not health["store"]["available"]
                assert "127.0.0.1" in health["store"]["description"]
                down = node.announce(7)
                assert down[b"failure reason"] == b"tracker temporarily unavailable"
                assert b"retry in" in down
                reply = udp_announce(udp, node.port, conn, 7)
                assert struct.unpack_from(">I", reply)[0] == 3
                assert b"temporarily unavailable" in reply[8:]
                server.start()
                wait_for("/health to say 200", lambda: node.admin("/health")[0] == 200)
                wait_for("announces served again", lambda: b"failure reason" not in
                         node.announce(8))
                assert udp_peers(udp_announce(udp, node.port, conn, 9)) is not None
                # A Redis that hangs (stopped, its socket open) costs each request at most
                # the timeout, then a failure reply; it is served again when Redis wakes.
                assert server.process is not None
                server.process.send_signal(signal.SIGSTOP)
                try:
                    hung = node.announce(10)
                    assert hung[b"failure reason"] == b"tracker temporarily unavailable"
                    wait_for("/health to say 503", lambda: node.admin("/health")[0] == 503)
                finally:
                    server.process.send_signal(signal.SIGCONT)
                wait_for("/health to say 200", lambda: node.admin("/health")[0] == 200)
                wait_for("announces served again", lambda: b"failure reason" not in
                         node.announce(11))
            finally:
                stop.set()
                thread.join(WAIT)
        assert not thread.is_alive()
        assert not [o for o in outcomes if o.startswith("error")], outcomes
        seen = set(outcomes)
        assert {"ok", "tracker temporarily unavailable"} <= seen
        assert seen <= {"ok", "tracker temporarily unavailable"}, seen
        assert outcomes[-1] == "ok"
    finally:
        server.stop()
