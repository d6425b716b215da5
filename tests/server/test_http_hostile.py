"""The HTTP frontend under hostile clients (issue "Hold under hostile load"), over real
sockets on loopback: clients that pipeline without reading, take every connection slot
from one address or sit silent, send bytes that are not HTTP, or try to forge log lines.

Helpers come from test_http_server.py; every wait is bounded by ``WAIT`` and nothing asserts
on how fast anything happens.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_http_server import (
    WAIT,
    Client,
    GatedStore,
    RunningTracker,
    announce,
    announce_path,
    get,
    info_hash,
    make_settings,
    peer_id,
    scrape_path,
    wait_until,
)

from shoal.server import http as http_module
from shoal.server.http import HttpConnection, printable

PARSERS = ["auto", "python"]  # httptools (when installed) and the pure-Python fallback


@pytest.fixture
def start(launch_tracker: Callable[..., RunningTracker]) -> Callable[..., RunningTracker]:
    def run(settings: Any = None) -> RunningTracker:
        return launch_tracker(settings or make_settings(), None, RunningTracker, grace=WAIT)

    return run


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def set_options(rt: RunningTracker, **changes: Any) -> None:
    """Change the HTTP frontend's options in place (for settings the config does not map)."""
    http = rt.tracker.http

    def change() -> None:
        http.options = dataclasses.replace(http.options, **changes)

    rt.in_loop(change)


def server_side(rt: RunningTracker, sock: socket.socket) -> HttpConnection:
    """The server's connection object for the client socket ``sock``."""
    local = sock.getsockname()[:2]

    def find() -> HttpConnection | None:
        for conn in rt.tracker.http.connections:
            if conn.transport is not None and \
                    conn.transport.get_extra_info("peername")[:2] == local:
                return conn
        return None

    wait_until(lambda: rt.in_loop(find) is not None)
    conn = rt.in_loop(find)
    assert conn is not None
    return conn


class SmallWindowClient(Client):
    """A client whose socket holds little unread data, so what it does not read stays on
    the server (bound to ``source`` when given)."""

    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(WAIT)
        self.sock.connect((host, port))
        self.buf = b""


def bound_client(rt: RunningTracker, source: str) -> Client:
    client = Client.__new__(Client)
    client.sock = socket.create_connection(("127.0.0.1", rt.port()), timeout=WAIT,
                                           source_address=(source, 0))
    client.buf = b""
    return client


# 1. Pipelined requests never read do not grow memory.


def test_a_client_that_never_reads_its_pipelined_replies_is_held_to_a_bounded_buffer(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, hosts=["127.0.0.1"]))
    ih = info_hash(60)
    swarm = 250
    with rt.connect() as c:  # a large swarm, so every reply lists 200 peers as dictionaries
        c.send(b"".join(get(announce_path(ih, peer_id(n), 1000 + n, numwant=1))
                        for n in range(swarm)))
        for _ in range(swarm):
            assert c.response().status == 200
    count = 1500  # ~12 KB replies each: 18 MB if they were all answered ahead
    data = b"".join(get(announce_path(ih, peer_id(10000 + n), 20000 + n, compact=0, numwant=200))
                    for n in range(count))
    reader = SmallWindowClient("127.0.0.1", rt.port())
    # Its first bytes first: a silent connection may be held by the compiled data plane,
    # which hands it to a Python connection with the first request it does not answer.
    sent = reader.sock.send(data[:65536])
    conn = server_side(rt, reader.sock)
    reader.sock.setblocking(False)
    deadline = time.monotonic() + WAIT
    while sent < len(data) and not rt.in_loop(lambda: conn._write_paused):
        assert time.monotonic() < deadline, "the server never stopped writing"
        try:
            sent += reader.sock.send(data[sent : sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    wait_until(lambda: rt.in_loop(lambda: conn._write_paused))

    def held() -> tuple[int, int, int, int]:
        assert conn.transport is not None
        return (conn.transport.get_write_buffer_size(), len(conn._pending),
                len(conn._deferred), len(conn._inbox) - conn._inbox_pos)

    def answered() -> int:
        rt.tracker.counters.pull()  # (what the compiled path answered is counted there)
        return rt.tracker.counters.requests["http", "ipv4", "announce"] - swarm

    first = rt.in_loop(answered)
    # Another client is served meanwhile (on another torrent, to keep the counts simple).
    assert announce(rt, "127.0.0.1", 1, info_hash(61))[b"incomplete"] == 1
    time.sleep(0.5)  # give a runaway server time to run away
    written, pending, deferred, kept = rt.in_loop(held)
    assert written <= http_module._WRITE_HIGH + 64 * 1024  # one reply past the mark at most
    assert pending <= http_module._MAX_PENDING
    assert deferred * 200 <= http_module._FEED_SLICE  # from one slice of input at most
    assert kept <= http_module._MAX_INBOX + 256 * 1024  # plus one read at most
    # Answering stopped (the other client's announce aside), far short of all.
    assert rt.in_loop(answered) == first + 1
    assert first < count // 2
    # When the client reads, every reply arrives, in order.
    reader.sock.settimeout(WAIT)
    rest = threading.Thread(target=reader.sock.sendall, args=(data[sent:],), daemon=True)
    rest.start()
    try:
        for n in range(count):
            reply = reader.response()
            assert reply.status == 200
            body = reply.bdecode()
            assert body[b"incomplete"] == swarm + n + 1, f"reply {n} out of order"
            assert len(body[b"peers"]) == 200
    finally:
        rest.join(WAIT)
        reader.close()


def test_a_large_reply_to_http_1_0_keep_alive_says_so_and_arrives_whole(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    """The full scrape is shared by every request and written after its own head, so the
    HTTP/1.0 keep-alive header goes into the head, never into a copy of the body."""
    rt = start(make_settings(parser, tracker_full_scrape=True, tracker_full_scrape_cache=3600))
    torrents = 800  # ~50 bytes each in a scrape: well over the size written apart
    with rt.connect() as c:
        c.send(b"".join(get(announce_path(info_hash(n), peer_id(1), 1)) for n in range(torrents)))
        for _ in range(torrents):
            assert c.response().status == 200
        replies = []
        for _ in range(3):
            replies.append(c.request("/scrape", version="HTTP/1.0",
                                     headers="Connection: keep-alive\r\n"))
    for reply in replies:
        assert reply.headers[b"connection"] == b"keep-alive"
        assert len(reply.bdecode()[b"files"]) == torrents
    assert len(replies[0].body) >= http_module._SPLIT_BODY
    assert replies[0].body == replies[1].body == replies[2].body


def test_a_large_body_is_handed_to_the_transport_as_is() -> None:
    body = b"d5:filesd" + b"x" * 100_000 + b"ee"
    reply = http_module._response(200, body, True, b"text/plain")
    assert isinstance(reply, tuple)
    assert reply[1] is body
    assert reply[0].endswith(b"Content-Length: %d\r\n\r\n" % len(body))


# 2. One address cannot take every slot; silent connections go; idle ones make room.


def test_one_address_beyond_its_cap_is_closed_while_another_address_is_served(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, hosts=["127.0.0.1"]))
    set_options(rt, max_connections_per_ip=3)
    held = [bound_client(rt, "127.0.0.1") for _ in range(3)]
    try:
        for c in held:
            assert c.request("/").status == 404
        with bound_client(rt, "127.0.0.1") as extra:
            assert extra.closed()
            assert extra.buf == b""
        with bound_client(rt, "127.0.0.2") as other:
            assert other.request("/").status == 404
        for c in held:
            assert c.request("/").status == 404  # the ones within the cap live on
        held.pop().close()
        wait_until(lambda: rt.in_loop(lambda: rt.tracker.http.per_ip.get(b"\x7f\0\0\x01")) == 2)
        with bound_client(rt, "127.0.0.1") as again:
            assert again.request("/").status == 404
    finally:
        for c in held:
            c.close()
    assert rt.in_loop(lambda: rt.tracker.counters.dropped["http_per_ip_limit"]) == 1


def test_a_connection_silent_past_first_byte_timeout_is_closed(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser))
    set_options(rt, first_byte_timeout=0.5)
    with rt.connect() as c:
        assert c.closed()
        assert c.buf == b""
    counters = rt.tracker.counters  # (on the compiled data plane, C held it: pulled in)
    rt.in_loop(counters.pull)
    assert rt.in_loop(lambda: counters.dropped["http_first_byte_timeout"]) == 1
    assert rt.in_loop(lambda: counters.dropped["http_timeout"]) == 0


def test_a_connection_that_began_a_request_has_the_request_deadline_not_the_first_byte_one(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser))
    set_options(rt, first_byte_timeout=0.5)
    with rt.connect() as c:
        c.send(b"GET / HTTP/1.1\r\n")
        time.sleep(2.5)  # past the first-byte deadline and two reaper rounds
        c.send(b"\r\n")
        assert c.response().status == 404
        assert c.request("/").status == 404
    assert rt.in_loop(lambda: rt.tracker.counters.dropped["http_first_byte_timeout"]) == 0


def test_when_slots_run_short_the_longest_idle_keep_alive_connection_makes_room(
    start: Callable[..., RunningTracker], parser: str
) -> None:
    rt = start(make_settings(parser, http_max_connections=4))
    held = [rt.connect() for _ in range(4)]
    try:
        for c in held:
            assert c.request("/").status == 404
        assert held[0].request("/").status == 404  # now held[1] has been idle the longest
        with rt.connect() as new:
            assert new.request("/").status == 404
        assert held[1].closed()
        for n in (0, 2, 3):
            assert held[n].request("/").status == 404
    finally:
        for c in held:
            c.close()
    counters = rt.tracker.counters
    assert rt.in_loop(lambda: counters.dropped["http_idle_evicted"]) == 1
    assert rt.in_loop(lambda: counters.dropped["http_connection_limit"]) == 0


def test_the_reaper_looks_only_at_connections_whose_deadline_may_have_passed(
    start: Callable[..., RunningTracker],
) -> None:
    rt = start(make_settings(http_keepalive_timeout=30, http_request_timeout=0.5))
    http = rt.tracker.http
    idle = [rt.connect() for _ in range(20)]
    try:
        for c in idle:
            assert c.request("/").status == 404
        time.sleep(1.6)  # their request deadlines' seconds are behind them: reap those now
        rt.in_loop(http.reap)
        looked = [0]
        reap = http.reap

        def counting_reap() -> int:
            n = reap()
            looked[0] += n
            return n

        rt.in_loop(lambda: setattr(http, "reap", counting_reap))  # the reaper task's too
        with rt.connect() as slow:
            slow.send(b"GET / HTTP/1.1\r\n")  # due in half a second
            assert slow.response().status == 408
        # Every round looked at the due connection alone, never at the 20 idle ones.
        assert 1 <= rt.in_loop(lambda: looked[0]) <= 3
        for c in idle:
            assert c.request("/").status == 404
    finally:
        for c in idle:
            c.close()


# 3. Bytes that are not HTTP are refused at once; nothing raw reaches the log.


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64, id="tls"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="http2-preface"),
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n", id="ssh"),
        pytest.param(b"GET /announce?x=\x00\x1b[2J HTTP/1.1\r\n", id="control-in-target"),
        pytest.param(b"GET /announce?x= injected HTTP/1.1\r\n", id="space-in-target"),
    ],
)
def test_bytes_that_cannot_become_a_request_are_400_at_once(
    start: Callable[..., RunningTracker], parser: str, data: bytes
) -> None:
    # With a 60 s request deadline, only an immediate refusal is answered within WAIT.
    rt = start(make_settings(parser, http_request_timeout=60))
    with rt.connect() as c:
        c.send(data)
        reply = c.response()
        assert reply.status == 400
        assert c.closed()


@pytest.mark.parametrize("lengths", [("3", "3"), ("3", "4")], ids=["duplicate", "conflicting"])
def test_a_repeated_content_length_is_400(
    start: Callable[..., RunningTracker], parser: str, lengths: tuple[str, str]
) -> None:
    rt = start(make_settings(parser))
    with rt.connect() as c:
        c.send(b"POST /announce HTTP/1.1\r\nContent-Length: %s\r\nContent-Length: %s\r\n\r\n"
               b"abcd" % (lengths[0].encode(), lengths[1].encode()))
        assert c.response().status == 400
        assert c.closed()


def test_log_text_escapes_control_and_non_ascii_bytes() -> None:
    assert printable(b"/a\r\nINFO forged\x1b[31m\x00\x7f\xc3\xa9\\") == (
        "/a\\x0d\\x0aINFO forged\\x1b[31m\\x00\\x7f\\xc3\\xa9\\x5c"
    )
    assert printable(b"a" * 300) == "a" * 200 + "..."


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_records() -> Iterator[Records]:
    logger = logging.getLogger("shoal.access")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_access_line_names_client_status_latency_and_target_as_fields(
    start: Callable[..., RunningTracker], parser: str, access_records: Records
) -> None:
    rt = start(make_settings(parser, http_access_log=True))
    path = announce_path(info_hash(62), peer_id(1), 1)
    with rt.connect() as c:
        assert c.request(path).status == 200
        assert c.request("/announce?info_hash=short").status == 200
        assert c.request("/nowhere").status == 404
        c.send(b"GET /a\x1b[2J\r\nforged HTTP/1.1\r\n\r\n")
        assert c.response().status == 400
    wait_until(lambda: len(access_records.records) == 4)
    ok, failure, missing, refused = access_records.records
    assert (ok.client, ok.status, ok.request) == ("127.0.0.1", 200, path)  # type: ignore[attr-defined]
    assert ok.latency_ms >= 0  # type: ignore[attr-defined]
    assert ok.outcome == "ok"  # type: ignore[attr-defined]
    assert failure.outcome == "failure: info_hash must be 20 bytes"  # type: ignore[attr-defined]
    assert (missing.status, missing.request) == (404, "/nowhere")  # type: ignore[attr-defined]
    assert refused.status == 400  # type: ignore[attr-defined]
    for record in access_records.records:
        line = record.getMessage()
        assert line.isprintable() and line.isascii(), line
        assert line.startswith("127.0.0.1 ")


def test_requests_pipelined_behind_a_slow_reply_wait_their_turn_and_all_get_answered(
    launch_tracker: Callable[..., RunningTracker], parser: str
) -> None:
    """More requests than the replies allowed in flight: the rest wait parsed or unparsed,
    and are answered in order once the slow one is."""
    settings = make_settings(parser)
    store = GatedStore(settings)
    rt = launch_tracker(settings, store, RunningTracker, grace=WAIT)
    count = http_module._MAX_PENDING * 5
    with rt.connect() as c:
        c.send(get(announce_path(GatedStore.SLOW, peer_id(0), 1))
               + b"".join(get(announce_path(info_hash(63), peer_id(n), 1000 + n))
                          for n in range(1, count))
               + get(scrape_path(GatedStore.SLOW)))
        assert store.entered.wait(WAIT)
        wait_until(lambda: rt.in_loop(
            lambda: sum(len(conn._deferred) for conn in rt.tracker.http.connections)) > 0)
        store.release.set()
        assert c.response().bdecode()[b"incomplete"] == 1
        for n in range(1, count):
            assert c.response().bdecode()[b"incomplete"] == n
        assert c.response().bdecode()[b"files"][GatedStore.SLOW][b"incomplete"] == 1
