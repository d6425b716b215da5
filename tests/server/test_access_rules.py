"""Access rules on real sockets: the same rules hold over HTTP and UDP."""

from __future__ import annotations

import dataclasses
import socket
import struct
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.running import RunningTracker

from shoal.config import Settings
from shoal.engine.rules import NetworkSet
from shoal.protocol.bencode import decode

PROTOCOL_ID = 0x41727101980
ALLOWED, OTHER = bytes([0xA1]) * 20, bytes([0xB2]) * 20
WAIT = 5.0


def settings(**access: Any) -> Settings:
    base = Settings()
    return dataclasses.replace(
        base,
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0),
        udp=dataclasses.replace(base.udp, hosts=["127.0.0.1"], port=0),
        admin=dataclasses.replace(base.admin, enabled=False),
        access=dataclasses.replace(base.access, **access),
    )


def http_announce(rt: RunningTracker, torrent: bytes, peer: bytes = b"-TR3000-000000000001",
                  source: str = "127.0.0.1") -> dict[bytes, Any]:
    query = urllib.parse.urlencode({"info_hash": torrent, "peer_id": peer, "port": 6881,
                                    "uploaded": 0, "downloaded": 0, "left": 5})
    port = rt.listener("http")[1]
    with socket.create_connection(("127.0.0.1", port), WAIT, (source, 0)) as sock:
        sock.sendall(f"GET /announce?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    found = decode(data.partition(b"\r\n\r\n")[2])
    assert isinstance(found, dict)
    return found


class UdpClient:
    def __init__(self, rt: RunningTracker, source: str = "127.0.0.1") -> None:
        self.server = rt.listener("udp")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(1.0)

    def close(self) -> None:
        self.sock.close()

    def ask(self, packet: bytes) -> bytes | None:
        self.sock.sendto(packet, self.server)
        try:
            return self.sock.recv(2048)
        except TimeoutError:
            return None

    def connect(self) -> int | None:
        reply = self.ask(struct.pack(">QII", PROTOCOL_ID, 0, 1))
        return None if reply is None else int(struct.unpack(">IIQ", reply)[2])

    def announce(self, conn: int, torrent: bytes,
                 peer: bytes = b"-TR3000-000000000002") -> tuple[int, bytes]:
        packet = struct.pack(">QII20s20sQQQIIIiH", conn, 1, 9, torrent, peer, 0, 5, 0, 2, 0, 0,
                             -1, 6882)
        reply = self.ask(packet)
        assert reply is not None
        action = struct.unpack_from(">I", reply)[0]
        return action, reply[8:]


@pytest.fixture
def udp_clients() -> Any:
    made: list[UdpClient] = []

    def make(rt: RunningTracker, source: str = "127.0.0.1") -> UdpClient:
        client = UdpClient(rt, source)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def listing(tmp_path: Path, *hashes: bytes) -> str:
    path = tmp_path / "torrents.txt"
    path.write_text("# served here\n" + "".join(h.hex() + "\n" for h in hashes))
    return str(path)


@pytest.mark.usefixtures("udp_engine")
def test_torrent_outside_the_allow_list_is_refused_over_http_and_udp(
    launch_tracker: Callable[..., RunningTracker], udp_clients: Any, tmp_path: Path
) -> None:
    rt = launch_tracker(settings(torrents="allow", torrent_list=listing(tmp_path, ALLOWED)))
    assert b"failure reason" not in http_announce(rt, ALLOWED)
    refused = http_announce(rt, OTHER)
    assert refused[b"failure reason"] == b"torrent not allowed on this tracker"
    assert refused[b"retry in"] == 60
    udp = udp_clients(rt)
    conn = udp.connect()
    assert conn is not None
    assert udp.announce(conn, ALLOWED)[0] == 1
    assert udp.announce(conn, OTHER) == (3, b"torrent not allowed on this tracker")


def test_torrent_on_the_deny_list_is_refused_and_others_served(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    rt = launch_tracker(settings(torrents="deny", torrent_list=listing(tmp_path, OTHER)))
    assert b"failure reason" not in http_announce(rt, ALLOWED)
    assert b"failure reason" in http_announce(rt, OTHER)


@pytest.mark.usefixtures("udp_engine")
def test_denied_client_prefix_is_refused_over_http_and_udp(
    launch_tracker: Callable[..., RunningTracker], udp_clients: Any
) -> None:
    rt = launch_tracker(settings(client_deny=["-XX1"]))
    assert b"failure reason" not in http_announce(rt, ALLOWED, b"-XX2000-000000000001")
    refused = http_announce(rt, ALLOWED, b"-XX1000-000000000001")
    assert refused[b"failure reason"] == b"client not allowed on this tracker"
    udp = udp_clients(rt)
    conn = udp.connect()
    assert conn is not None
    assert udp.announce(conn, ALLOWED, b"-XX1000-000000000009")[0] == 3


def test_client_allow_list_serves_only_those_prefixes(
    launch_tracker: Callable[..., RunningTracker],
) -> None:
    rt = launch_tracker(settings(client_allow=["-TR", "-qB4"]))
    assert b"failure reason" not in http_announce(rt, ALLOWED, b"-qB4520-000000000001")
    assert b"failure reason" in http_announce(rt, ALLOWED, b"-qB3000-000000000001")


@pytest.mark.usefixtures("udp_engine")
def test_banned_address_gets_a_failure_reason_over_http_and_silence_over_udp(
    launch_tracker: Callable[..., RunningTracker], udp_clients: Any, tmp_path: Path
) -> None:
    bans = tmp_path / "bans.txt"
    bans.write_text("127.0.0.2/32  # a bad neighbour\n")
    rt = launch_tracker(settings(ban_list=str(bans), banned_networks=["2001:db8::/32"]))
    refused = http_announce(rt, ALLOWED, source="127.0.0.2")
    assert refused[b"failure reason"] == b"your address is banned from this tracker"
    assert b"failure reason" not in http_announce(rt, ALLOWED, source="127.0.0.1")
    banned = udp_clients(rt, "127.0.0.2")
    assert banned.connect() is None  # not even a connection id
    assert udp_clients(rt, "127.0.0.1").connect() is not None
    failures = rt.in_loop(lambda: (rt.tracker.counters.pull(),
                                   dict(rt.tracker.counters.failures))[1])
    assert failures["your address is banned from this tracker"] == 1
    assert rt.in_loop(lambda: rt.tracker.counters.dropped["udp_banned"]) == 1


@pytest.mark.usefixtures("udp_engine")
def test_a_reload_that_bans_an_address_silences_it_over_udp_at_once(
    launch_tracker: Callable[..., RunningTracker], udp_clients: Any
) -> None:
    rt = launch_tracker(settings())
    client = udp_clients(rt, "127.0.0.3")
    assert client.connect() is not None
    logic = rt.tracker.logic
    banning = dataclasses.replace(logic.config, access=dataclasses.replace(
        logic.access, banned=NetworkSet(["127.0.0.3/32"])))
    rt.in_loop(lambda: logic.configure(banning))  # as a reload does
    assert client.connect() is None
    assert udp_clients(rt, "127.0.0.1").connect() is not None
    lifted = dataclasses.replace(logic.config, access=dataclasses.replace(
        logic.access, banned=NetworkSet()))
    rt.in_loop(lambda: logic.configure(lifted))
    assert client.connect() is not None
    assert rt.in_loop(lambda: rt.tracker.counters.dropped["udp_banned"]) == 1

def test_scrape_shows_zeros_for_a_torrent_that_may_not_be_served(
    launch_tracker: Callable[..., RunningTracker], tmp_path: Path
) -> None:
    path = listing(tmp_path, ALLOWED, OTHER)
    rt = launch_tracker(settings(torrents="allow", torrent_list=path))
    http_announce(rt, OTHER)
    logic = rt.tracker.logic
    listed = logic.access.torrents
    assert listed is not None
    narrower = dataclasses.replace(
        logic.config, access=dataclasses.replace(
            logic.access, torrents=dataclasses.replace(listed, hashes=frozenset([ALLOWED]))))
    rt.in_loop(lambda: logic.configure(narrower))  # as a reload does
    port = rt.listener("http")[1]
    query = urllib.parse.urlencode([("info_hash", OTHER)])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/scrape?{query}", timeout=WAIT) as r:
        files = decode(r.read())[b"files"]  # type: ignore[index]
    assert files[OTHER] == {b"complete": 0, b"incomplete": 0, b"downloaded": 0}
