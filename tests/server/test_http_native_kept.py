"""Keep-alive connections kept in C between requests (``HttpAnswer.keep_start``) follow the
HTTP frontend's rules, as Python's own connections do: the keep-alive wait and the
first-byte wait close them, the per-address cap and the connection cap count them, the
oldest is evicted to make room, a request C does not answer whole hands the connection over
to Python (which answers it as if it had had it all along), and shutdown closes them.

Each test runs one tracker on the compiled data plane over real loopback sockets; the
replies themselves are compared with the Python path's in test_http_native_answer.py.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.running import RunningTracker

from shoal.config import Settings
from shoal.protocol.bencode import decode
from shoal.storage.memory import MemoryStore

INFO_HASH = b"\xc1" * 20
OK_PREFIX = b"-TR3000-"


@pytest.fixture(autouse=True)
def _native(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("shoal._native_http")
    pytest.importorskip("shoal._native_store")
    monkeypatch.delenv("SHOAL_ENGINE", raising=False)  # the tracker names its engine


def settings(tmp_path: Path, **http: Any) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        tracker=dataclasses.replace(base.tracker, engine="native"),
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0, **http),
        udp=dataclasses.replace(base.udp, enabled=False),
        admin=dataclasses.replace(base.admin, enabled=False),
        storage=dataclasses.replace(base.storage, persist=False, data_dir=str(tmp_path)),
    )


def launch(launch_tracker: Callable[..., RunningTracker], tmp_path: Path,
           **http: Any) -> RunningTracker:
    rt = launch_tracker(settings(tmp_path, **http), MemoryStore(engine="native"))
    assert rt.tracker.native_http
    return rt


def python_connections(rt: RunningTracker) -> list[object]:
    """A list that gets an item for every Python connection object the tracker makes."""
    made: list[object] = []
    http = rt.tracker.http
    make = http.protocol
    rt.in_loop(lambda: setattr(http, "protocol", lambda: made.append(1) or make()))
    return made


def announce(n: int, extra: str = "") -> bytes:
    peer_id = OK_PREFIX + n.to_bytes(12, "big")
    query = ("info_hash=" + "".join(f"%{b:02X}" for b in INFO_HASH)
             + "&peer_id=" + "".join(f"%{b:02X}" for b in peer_id)
             + f"&port={6000 + n}&uploaded=0&downloaded=0&left=10&compact=1{extra}")
    return f"GET /announce?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def connect(rt: RunningTracker, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(rt.listener("http"), timeout=5.0,
                                    source_address=(source, 0))


def response(sock: socket.socket) -> dict[bytes, Any]:
    """One response's bencoded body (it raises on a closed connection)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    assert len(body) == length  # one request, one response: nothing more was sent
    reply = decode(body)
    assert isinstance(reply, dict)
    return reply


def ask(sock: socket.socket, n: int, extra: str = "") -> dict[bytes, Any]:
    sock.sendall(announce(n, extra))
    return response(sock)


def closed_by_server(sock: socket.socket, within: float = 10.0) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (reading nothing else)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def figures(rt: RunningTracker) -> tuple[int, int, dict[str, int]]:
    """(connections open, kept in C, drops by cause), with the compiled figures pulled."""
    tracker = rt.tracker
    counters = tracker.counters

    def read() -> tuple[int, int, dict[str, int]]:
        counters.pull()
        return (counters.connections_open, tracker.http.native.kept,
                {k: v for k, v in counters.dropped.items() if v})

    return rt.in_loop(read)


def wait_for(rt: RunningTracker, check: Callable[[tuple[int, int, dict[str, int]]], bool],
             seconds: float = 10.0) -> tuple[int, int, dict[str, int]]:
    deadline = time.monotonic() + seconds
    seen = figures(rt)
    while not check(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = figures(rt)
    return seen


def test_a_kept_connection_is_answered_in_c_request_after_request(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch(launch_tracker, tmp_path)
    made = python_connections(rt)
    http = rt.tracker.http
    with connect(rt) as sock:
        for round_ in range(20):
            reply = ask(sock, round_ % 3)
            assert reply[b"incomplete"] == min(round_ + 1, 3)
        assert figures(rt)[:2] == (1, 1)
    assert made == []
    assert wait_for(rt, lambda f: f[1] == 0)[:2] == (0, 0)  # its close seen in C
    counters = rt.tracker.counters
    assert rt.in_loop(lambda: (counters.pull(), counters.connections_total)[1]) == 1
    assert dict(http.answered_in_c) == {"announce": 20, "scrape": 0}


def test_the_keepalive_wait_closes_a_kept_connection(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch(launch_tracker, tmp_path, keepalive_timeout=1.0)
    with connect(rt) as sock:
        ask(sock, 1)
        assert figures(rt)[1] == 1
        assert closed_by_server(sock)
    open_, kept, dropped = wait_for(rt, lambda f: f[2].get("http_timeout", 0) == 1)
    assert (open_, kept, dropped) == (0, 0, {"http_timeout": 1})


def test_a_connection_silent_since_accepted_is_closed_after_the_first_byte_wait(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    # Without TCP_DEFER_ACCEPT the connection is accepted before any byte: C keeps it,
    # waiting for its request.
    rt = launch(launch_tracker, tmp_path, first_byte_timeout=1.0, defer_accept=0)
    with connect(rt) as sock:
        assert wait_for(rt, lambda f: f[1] == 1)[1] == 1
        assert closed_by_server(sock)
    dropped = wait_for(rt, lambda f: bool(f[2]))[2]
    assert dropped == {"http_first_byte_timeout": 1}


def test_a_silent_kept_connection_is_answered_when_its_request_comes(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch(launch_tracker, tmp_path, defer_accept=0)
    with connect(rt) as sock:
        assert wait_for(rt, lambda f: f[1] == 1)[1] == 1
        assert ask(sock, 1)[b"incomplete"] == 1
        assert ask(sock, 2)[b"incomplete"] == 2
    figures(rt)  # (pulls the compiled figures)
    assert dict(rt.tracker.http.answered_in_c) == {"announce": 2, "scrape": 0}


def test_kept_connections_count_toward_the_per_address_cap(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch(launch_tracker, tmp_path, max_connections_per_ip=2)
    first, second = connect(rt), connect(rt)
    try:
        ask(first, 1)
        ask(second, 2)
        assert figures(rt)[:2] == (2, 2)
        with connect(rt) as third:  # refused before any answer, as Python refuses it
            third.sendall(announce(3))
            assert closed_by_server(third)
        with connect(rt, "127.0.0.2") as other:  # another address has its own count
            assert ask(other, 4)[b"incomplete"] == 3
        assert wait_for(rt, lambda f: f[2].get("http_per_ip_limit", 0) == 1)[2] == {
            "http_per_ip_limit": 1}
        assert ask(first, 1)[b"incomplete"] == 3  # the kept ones carry on
    finally:
        first.close()
        second.close()
    assert wait_for(rt, lambda f: f[0] == 0)[:2] == (0, 0)
    assert rt.in_loop(lambda: dict(rt.tracker.http.per_ip)) == {}


def test_the_longest_idle_kept_connection_is_evicted_to_make_room(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    # max_connections 10: from 9 open, a new connection first closes the one idle longest.
    rt = launch(launch_tracker, tmp_path, max_connections=10)
    socks = [connect(rt, f"127.0.0.{n + 1}") for n in range(9)]
    try:
        for n, sock in enumerate(socks):
            ask(sock, n)
        assert figures(rt)[:2] == (9, 9)
        with connect(rt, "127.0.0.50") as newcomer:
            assert ask(newcomer, 50)[b"incomplete"] == 10
            assert closed_by_server(socks[0])  # the oldest
            for sock in socks[1:]:
                assert ask(sock, 60)[b"incomplete"] >= 1  # the others still answer
        dropped = wait_for(rt, lambda f: "http_idle_evicted" in f[2])[2]
        assert dropped == {"http_idle_evicted": 1}
    finally:
        for sock in socks:
            sock.close()


def test_a_request_c_does_not_answer_whole_hands_the_connection_to_python(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch(launch_tracker, tmp_path)
    made = python_connections(rt)
    http = rt.tracker.http
    with connect(rt) as sock:
        ask(sock, 1)
        assert made == []
        # A request split across two reads: C declines the first part, and Python has
        # what was read.
        raw = announce(2)
        sock.sendall(raw[:30])
        assert wait_for(rt, lambda f: f[1] == 0)[1] == 0
        sock.sendall(raw[30:])
        assert response(sock)[b"incomplete"] == 2
        assert made == [1]
        # A Python connection from now on (whose whole requests still go to C first).
        assert ask(sock, 3)[b"incomplete"] == 3
        assert figures(rt)[:2] == (1, 0)
        assert made == [1]
    assert dict(http.answered_in_c) == {"announce": 2, "scrape": 0}


def test_pipelined_requests_on_a_kept_connection_are_answered_in_order(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch(launch_tracker, tmp_path)
    with connect(rt) as sock:
        ask(sock, 1)
        sock.sendall(announce(2) + announce(3) + announce(4))
        data = b""
        while data.count(b"HTTP/1.1 200") < 3 or not data.endswith(b"e"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        counts = [decode(part.partition(b"\r\n\r\n")[2])[b"incomplete"]  # type: ignore[index]
                  for part in data.split(b"HTTP/1.1 ")[1:]]
        assert counts == [2, 3, 4]
        assert figures(rt)[1] == 1


def test_a_kept_connection_whose_client_shuts_its_side_after_a_request_is_closed_once_answered(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    # The kept set is edge-triggered: the end of the client's side comes with its request's
    # edge, and no later edge would report it, so the reply is followed by the close rather
    # than by the keep-alive wait.
    rt = launch(launch_tracker, tmp_path, keepalive_timeout=60.0)
    with connect(rt) as sock:
        ask(sock, 1)
        assert figures(rt)[1] == 1
        sock.sendall(announce(2))
        sock.shutdown(socket.SHUT_WR)
        assert response(sock)[b"incomplete"] == 2
        assert closed_by_server(sock, within=5.0)
    assert wait_for(rt, lambda f: f[:2] == (0, 0))[:2] == (0, 0)


def test_shutdown_closes_the_kept_connections(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch(launch_tracker, tmp_path)
    with connect(rt) as sock:
        ask(sock, 1)
        assert figures(rt)[1] == 1
        rt.stop()
        assert closed_by_server(sock)
    assert rt.tracker.counters.connections_open == 0


def test_connections_ready_together_each_get_their_own_reply(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    # serve() reads every ready connection, then answers them all, then sends every reply:
    # with the loop held while they send, one batch has scrapes to answer, a request for
    # Python, one whose reply closes it, and a connection closed by its client.
    rt = launch(launch_tracker, tmp_path)
    made = python_connections(rt)
    hashes = [bytes([0xA0 + n]) * 20 for n in range(8)]

    def request(n: int, path: str, extra: str = "", headers: str = "") -> bytes:
        escaped = "".join(f"%{b:02X}" for b in hashes[n])
        peer = "".join(f"%{b:02X}" for b in OK_PREFIX + n.to_bytes(12, "big"))
        query = (f"info_hash={escaped}" if path == "scrape" else
                 f"info_hash={escaped}&peer_id={peer}&port={7000 + n}&uploaded=0"
                 f"&downloaded=0&left=10{extra}")
        return f"GET /{path}?{query} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode()

    socks = [connect(rt) for _ in hashes]
    try:
        for n, sock in enumerate(socks):
            sock.sendall(request(n, "announce", "&compact=1"))
            assert response(sock)[b"incomplete"] == 1
        assert figures(rt)[:2] == (8, 8)
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            held.set()
            release.wait(10)

        holder = threading.Thread(target=rt.in_loop, args=(hold,))
        holder.start()
        try:
            assert held.wait(10)
            for n in range(5):
                socks[n].sendall(request(n, "scrape"))
            socks[5].sendall(request(5, "announce", "&compact=0"))
            socks[6].sendall(request(6, "scrape", headers="Connection: close\r\n"))
            socks[7].shutdown(socket.SHUT_WR)
            time.sleep(0.2)  # (all of it in the tracker's sockets)
        finally:
            release.set()
            holder.join()
        for n in range(5):
            assert list(response(socks[n])[b"files"]) == [hashes[n]]
        assert response(socks[5])[b"peers"] == []  # a list: Python's dictionary model
        assert list(response(socks[6])[b"files"]) == [hashes[6]]
        assert closed_by_server(socks[6])
        assert closed_by_server(socks[7])
        assert made == [1]
        assert wait_for(rt, lambda f: f[:2] == (6, 5))[:2] == (6, 5)
    finally:
        for sock in socks:
            sock.close()
