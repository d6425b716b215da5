"""The WebSocket (WebTorrent) tracker over real sockets on 127.0.0.1, with the
``websockets`` library's client: offers reach other peers, answers come back, scrape counts,
a closed socket leaves its swarms, bad messages get an error and harm nothing else.

Every receive is bounded by ``WAIT`` seconds; "nothing arrives" is checked by sending a
scrape behind it on the same socket and seeing the scrape's reply come first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.running import RunningTracker
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from shoal.config import Settings
from shoal.server.clock import Clock

WAIT = 5.0


def make_settings(**changes: Any) -> Settings:
    base = Settings()
    sections: dict[str, dict[str, Any]] = {
        "http": {"hosts": ["127.0.0.1"], "port": 0},
        "udp": {"enabled": False},
        "admin": {"enabled": False},
        "tracker": {"interval_jitter": 0},
    }
    for name, value in changes.items():
        section, _, key = name.partition("_")
        sections.setdefault(section, {})[key] = value
    return dataclasses.replace(base, **{
        name: dataclasses.replace(getattr(base, name), **values)
        for name, values in sections.items()})


def ident(tag: str, n: int) -> str:
    """A 20-character binary id, as the reference clients send (bytes as characters)."""
    return (tag.encode() + bytes([0xE9, n]) + bytes(18)).decode("latin-1")[:20]


HASH = ident("h", 1)


@pytest.fixture
def tracker(launch_tracker: Callable[..., RunningTracker]) -> Callable[..., RunningTracker]:
    def run(**changes: Any) -> RunningTracker:
        return launch_tracker(make_settings(**changes))
    return run


@pytest.fixture
def sockets() -> Iterator[Callable[..., ClientConnection]]:
    with contextlib.ExitStack() as stack:

        def open_socket(rt: RunningTracker, path: str = "/announce",
                        port: int | None = None) -> ClientConnection:
            return stack.enter_context(connect(
                f"ws://127.0.0.1:{port or rt.port()}{path}", open_timeout=WAIT,
                compression=None))
        yield open_socket


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection) -> dict[str, Any]:
    value = json.loads(ws.recv(timeout=WAIT))
    assert isinstance(value, dict)
    return value


def announce(ws: ClientConnection, peer: str, info_hash: str = HASH, left: int = 100,
             **extra: Any) -> dict[str, Any]:
    send(ws, action="announce", info_hash=info_hash, peer_id=peer, uploaded=0, downloaded=0,
         left=left, **extra)
    return recv(ws)


def offer(n: int) -> dict[str, Any]:
    return {"offer": {"type": "offer", "sdp": f"v=0 offer {n}"}, "offer_id": ident("o", n)}


def nothing_pending(ws: ClientConnection) -> bool:
    """No message waits on ``ws``: a scrape sent now is answered first."""
    send(ws, action="scrape", info_hash=ident("z", 0))
    return recv(ws)["action"] == "scrape"


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_an_announce_is_answered_with_interval_counts_and_info_hash(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    reply = announce(sockets(rt), ident("p", 1), event="started", numwant=0)
    assert reply == {"action": "announce", "interval": 1800, "info_hash": HASH,
                     "complete": 0, "incomplete": 1}


def test_the_root_path_serves_the_tracker_too(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    assert announce(sockets(rt, "/"), ident("p", 1), left=0)["complete"] == 1


def test_an_offer_reaches_another_peer_with_the_senders_id_and_the_offer_id(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    seeder, leecher = sockets(rt), sockets(rt)
    announce(seeder, ident("s", 1), left=0)
    announce(leecher, ident("l", 1), offers=[offer(1)], numwant=1)
    relayed = recv(seeder)
    assert relayed == {"action": "announce", "info_hash": HASH, "peer_id": ident("l", 1),
                       "offer_id": ident("o", 1), "offer": offer(1)["offer"]}


def test_each_offer_goes_to_a_different_peer_and_never_back_to_the_sender(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    seeders = [sockets(rt) for _ in range(3)]
    for n, ws in enumerate(seeders):
        announce(ws, ident("s", n), left=0)
    leecher = sockets(rt)
    announce(leecher, ident("l", 1), offers=[offer(n) for n in range(3)], numwant=3)
    got = [recv(ws)["offer_id"] for ws in seeders]
    assert sorted(got) == sorted(ident("o", n) for n in range(3))
    assert nothing_pending(leecher)


def test_an_answer_comes_back_to_the_offerer(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    seeder, leecher = sockets(rt), sockets(rt)
    announce(seeder, ident("s", 1), left=0)
    announce(leecher, ident("l", 1), offers=[offer(7)], numwant=1)
    relayed = recv(seeder)
    answer = {"type": "answer", "sdp": "v=0 answer"}
    send(seeder, action="announce", info_hash=HASH, peer_id=ident("s", 1), answer=answer,
         to_peer_id=relayed["peer_id"], offer_id=relayed["offer_id"])
    assert recv(leecher) == {"action": "announce", "info_hash": HASH, "peer_id": ident("s", 1),
                             "offer_id": ident("o", 7), "answer": answer}
    assert rt.in_loop(lambda: rt.tracker.counters.ws_answers_relayed) == 1


def test_an_answer_to_an_offer_never_relayed_to_that_socket_is_dropped(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    a, b = sockets(rt), sockets(rt)
    announce(a, ident("a", 1))
    announce(b, ident("b", 1), left=0)
    answer = {"type": "answer", "sdp": "unasked"}
    send(b, action="announce", info_hash=HASH, peer_id=ident("b", 1), answer=answer,
         to_peer_id=ident("a", 1), offer_id=ident("o", 1))
    assert nothing_pending(a)
    assert rt.in_loop(lambda: rt.tracker.counters.ws_answers_refused) == 1


def test_an_answer_is_relayed_once_only(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    seeder, leecher = sockets(rt), sockets(rt)
    announce(seeder, ident("s", 1), left=0)
    announce(leecher, ident("l", 1), offers=[offer(1)], numwant=1)
    relayed = recv(seeder)
    for _ in range(2):
        send(seeder, action="announce", info_hash=HASH, peer_id=ident("s", 1),
             answer={"type": "answer", "sdp": "x"}, to_peer_id=relayed["peer_id"],
             offer_id=relayed["offer_id"])
    assert "answer" in recv(leecher)
    assert nothing_pending(leecher)


def test_scrape_counts_one_or_many_torrents(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    other = ident("h", 2)
    announce(sockets(rt), ident("s", 1), left=0)
    announce(sockets(rt), ident("l", 1))
    announce(sockets(rt), ident("l", 2), info_hash=other)
    ws = sockets(rt)
    send(ws, action="scrape", info_hash=HASH)
    assert recv(ws) == {"action": "scrape", "files": {
        HASH: {"complete": 1, "incomplete": 1, "downloaded": 0}}}
    send(ws, action="scrape", info_hash=[HASH, other])
    files = recv(ws)["files"]
    assert files[other] == {"complete": 0, "incomplete": 1, "downloaded": 0}
    assert files[HASH]["complete"] == 1


def test_a_closed_socket_leaves_every_swarm_it_announced(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    other = ident("h", 2)
    leaving = sockets(rt)
    announce(leaving, ident("p", 1))
    announce(leaving, ident("p", 1), info_hash=other, left=0)
    watcher = sockets(rt)

    def counts() -> list[tuple[int, int]]:
        send(watcher, action="scrape", info_hash=[HASH, other])
        files = recv(watcher)["files"]
        return [(files[h]["complete"], files[h]["incomplete"]) for h in (HASH, other)]

    assert counts() == [(0, 1), (1, 0)]
    leaving.close()
    wait_until(lambda: counts() == [(0, 0), (0, 0)])


def test_stopped_removes_the_peer_and_it_gets_no_more_offers(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    seeder, leecher = sockets(rt), sockets(rt)
    announce(seeder, ident("s", 1), left=0)
    assert announce(seeder, ident("s", 1), left=0, event="stopped")["complete"] == 0
    announce(leecher, ident("l", 1), offers=[offer(1)], numwant=1)
    assert nothing_pending(seeder)


def test_websocket_peers_are_not_tcp_peers(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    """A browser peer is kept apart from HTTP and UDP peers of the same torrent."""
    rt = tracker()
    announce(sockets(rt), ident("s", 1), left=0)
    counts = rt.in_loop(lambda: rt.tracker.store.scrape([HASH.encode("latin-1")]))
    assert counts[0].complete == 0


@pytest.mark.parametrize("message, reason", [
    ("not json", "message is not JSON"),
    ("[1, 2]", "message must be a JSON object"),
    ('{"action": "dance"}', "unknown action: expected announce or scrape"),
    ('{"action": "announce", "info_hash": "short", "peer_id": "x"}',
     "info_hash must be a string of 20 characters"),
    ("[" * 100000 + "]" * 100000, "message is not JSON"),
])
def test_a_bad_message_gets_an_error_and_the_socket_stays_open(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection],
    message: str, reason: str,
) -> None:
    rt = tracker(ws_max_message_bytes=300000)
    ws = sockets(rt)
    ws.send(message)
    assert recv(ws)["failure reason"] == reason
    assert announce(ws, ident("p", 1))["incomplete"] == 1


def test_too_many_offers_is_an_error_naming_the_limit(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker(ws_max_offers=2)
    reply = announce(sockets(rt), ident("p", 1), offers=[offer(n) for n in range(3)])
    assert reply["failure reason"] == "too many offers (at most 2)"
    assert reply["info_hash"] == HASH


def test_too_many_torrents_on_one_socket_is_an_error(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker(ws_max_torrents_per_socket=2)
    ws = sockets(rt)
    for n in range(2):
        assert "failure reason" not in announce(ws, ident("p", 1), info_hash=ident("h", n))
    reply = announce(ws, ident("p", 1), info_hash=ident("h", 9))
    assert reply["failure reason"] == "too many torrents on one socket"


def test_a_message_over_the_size_limit_closes_that_socket_only(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker(ws_max_message_bytes=1000)
    big, fine = sockets(rt), sockets(rt)
    big.send("x" * 5000)
    with pytest.raises(ConnectionClosed):
        big.recv(timeout=WAIT)
    assert announce(fine, ident("p", 1))["incomplete"] == 1


def test_sockets_beyond_the_cap_are_refused(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker(ws_max_connections=1)
    sockets(rt)
    with pytest.raises(InvalidStatus) as refused:
        sockets(rt)
    assert refused.value.response.status_code == 503


def test_a_silent_socket_is_pinged_and_one_that_never_answers_is_closed(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker(ws_ping_interval=0.5, ws_idle_timeout=30.0)
    ws = sockets(rt)  # the client answers pings by itself
    announce(ws, ident("p", 1))
    wait_until(lambda: rt.in_loop(lambda: sum(c.pings for c in rt.tracker.ws.connections)) > 1)
    assert announce(ws, ident("p", 1))["incomplete"] == 1  # answered pings: still open
    rt2 = tracker(ws_ping_interval=0.5, ws_idle_timeout=1.0)
    raw = __import__("socket").create_connection(("127.0.0.1", rt2.port()), timeout=WAIT)
    raw.sendall(b"GET /announce HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 101 ")
    deadline = time.monotonic() + WAIT
    closed = False
    while time.monotonic() < deadline and not closed:  # pings arrive, never answered
        try:
            closed = raw.recv(4096) == b""
        except ConnectionResetError:
            closed = True
    raw.close()
    assert closed
    assert rt2.in_loop(lambda: rt2.tracker.counters.dropped["ws_idle_timeout"]) == 1


def test_a_port_of_its_own_serves_websocket(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    rt = tracker(ws_port=port)
    ws = sockets(rt, port=rt.port("ws"))
    assert announce(ws, ident("p", 1))["incomplete"] == 1


def test_a_plain_http_upgrade_elsewhere_is_refused(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    with pytest.raises(InvalidStatus):
        sockets(rt, "/scrape")


def test_websocket_figures_reach_the_counters(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker()
    seeder, leecher = sockets(rt), sockets(rt)
    announce(seeder, ident("s", 1), left=0)
    announce(leecher, ident("l", 1), offers=[offer(1)], numwant=1)
    recv(seeder)
    c = rt.tracker.counters
    assert rt.in_loop(lambda: (c.ws_connections_open, c.ws_offers_relayed)) == (2, 1)
    assert rt.in_loop(lambda: c.requests["ws", "ipv4", "announce"]) == 2


def test_websocket_figures_are_in_stats_and_metrics(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection]
) -> None:
    rt = tracker(admin_enabled=True, admin_host="127.0.0.1", admin_port=0)
    seeder, leecher = sockets(rt), sockets(rt)
    announce(seeder, ident("s", 1), left=0)
    announce(leecher, ident("l", 1), offers=[offer(1)], numwant=1)
    recv(seeder)
    with urllib.request.urlopen(rt.admin_url + "/stats", timeout=WAIT) as reply:
        stats = json.load(reply)
    assert stats["websocket"] == {"open": 2, "total": 2, "peers": 2, "swarms": 1,
                                  "offers_relayed": 1, "answers_relayed": 0,
                                  "answers_refused": 0}
    assert stats["requests"]["by_protocol"]["ws"] == 4  # two handshakes, two announces
    with urllib.request.urlopen(rt.admin_url + "/metrics", timeout=WAIT) as reply:
        metrics = reply.read().decode()
    assert "shoal_ws_connections_open 2.0" in metrics
    assert 'shoal_ws_relayed_total{kind="offer"} 1.0' in metrics


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracker's clock moves only when the test moves it."""
    monkeypatch.setattr(Clock, "tick", lambda self: None)


def test_the_sweep_takes_out_a_peer_silent_on_an_open_socket(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection],
    frozen_clock: None,
) -> None:
    rt = tracker(tracker_peer_timeout=100)
    clock = rt.tracker.clock

    async def advance(seconds: int, sweep: bool = False) -> None:
        clock.now += seconds
        if sweep:
            await rt.tracker.sweep_once()

    quiet, busy = sockets(rt), sockets(rt)
    announce(quiet, ident("q", 1))
    announce(busy, ident("b", 1))
    rt.run(advance(60))
    assert announce(busy, ident("b", 1))["incomplete"] == 2
    # The quiet socket stays open (it answers pings) but announces nothing more: 110 s
    # after its announce it is out; the busy one, heard 50 s ago, stays.
    rt.run(advance(50, sweep=True))
    assert rt.in_loop(lambda: rt.tracker.counters.ws_peers) == 1
    assert rt.in_loop(lambda: rt.tracker.ws.socket_of(HASH.encode("latin-1"),
                                                      ident("q", 1).encode("latin-1"))) is None
    reply = announce(busy, ident("b", 1), offers=[offer(1)], numwant=1)
    assert (reply["complete"], reply["incomplete"]) == (0, 1)
    assert nothing_pending(quiet)  # no offer reaches a peer the sweep took out
    # Its socket is still good: announcing again puts it back.
    assert announce(quiet, ident("q", 1))["incomplete"] == 2
    assert rt.in_loop(lambda: rt.tracker.counters.ws_peers) == 2


def test_the_sweep_keeps_peers_that_announce_in_time(
    tracker: Callable[..., RunningTracker], sockets: Callable[..., ClientConnection],
    frozen_clock: None,
) -> None:
    rt = tracker(tracker_peer_timeout=100)
    clock = rt.tracker.clock

    async def sweep_at(seconds: int) -> None:
        clock.now += seconds
        await rt.tracker.sweep_once()

    ws = sockets(rt)
    announce(ws, ident("p", 1))
    announce(ws, ident("p", 1), info_hash=ident("h", 2))
    rt.run(sweep_at(100))  # silent exactly the timeout: not yet beyond it
    assert rt.in_loop(lambda: rt.tracker.counters.ws_peers) == 2
    assert announce(ws, ident("p", 1))["incomplete"] == 1
    rt.run(sweep_at(1))  # the second torrent's peer is now silent beyond the timeout
    assert rt.in_loop(lambda: rt.tracker.counters.ws_peers) == 1
    send(ws, action="scrape", info_hash=[HASH, ident("h", 2)])
    files = recv(ws)["files"]
    assert files[HASH]["incomplete"] == 1
    assert files[ident("h", 2)]["incomplete"] == 0
