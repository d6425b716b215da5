"""A tracker an operator can leave running: real ``shoal serve`` processes that restart
without losing swarms (kill -9 and SIGTERM) and reload their rules on SIGHUP."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ports import free_port
from support.serve import start_serve

from shoal.protocol.bencode import decode

WAIT = 20.0
PROTOCOL_ID = 0x41727101980


class Shoal:
    """``python -m shoal serve`` on 127.0.0.1 with a data directory and a config file."""

    def __init__(self, tmp: Path, **extra: str) -> None:
        self.port = free_port()
        self.config = tmp / "shoal.toml"
        lines = ["[storage]", f'data_dir = "{tmp / "data"}"', "snapshot_interval = 1",
                 "flush_interval = 0.2", "[admin]", "enabled = false"]
        sections: dict[str, list[str]] = {}
        for section_key, value in extra.items():
            section, key = section_key.split("__")
            sections.setdefault(section, []).append(f"{key} = {value}")
        for section, entries in sections.items():
            lines += [f"[{section}]", *entries]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "shoal.log"

    def start(self) -> None:
        self.proc = start_serve(self.config, self.port, self.log, wait=WAIT)

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(WAIT)
        self.proc = None

    def get(self, path: str, **params: str | bytes | int) -> dict[bytes, object]:
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}{path}?{query}"
        with urllib.request.urlopen(url, timeout=WAIT) as reply:
            found = decode(reply.read())
        assert isinstance(found, dict)
        return found

    def announce(self, torrent: bytes, n: int, **params: str | int) -> dict[bytes, object]:
        base: dict[str, str | bytes | int] = {
            "info_hash": torrent, "peer_id": f"-SH0100-{n:012d}".encode(),
            "port": 10000 + n, "uploaded": 0, "downloaded": 0, "left": 100,
        }
        base.update(params)
        return self.get("/announce", **base)

    def scrape(self, torrent: bytes) -> tuple[int, int, int]:
        files = self.get("/scrape", info_hash=torrent)[b"files"]
        assert isinstance(files, dict)
        entry = files[torrent]
        return entry[b"complete"], entry[b"incomplete"], entry[b"downloaded"]


@pytest.fixture
def shoal(tmp_path: Path) -> Iterator[Shoal]:
    tracker = Shoal(tmp_path)
    yield tracker
    tracker.stop(signal.SIGKILL)


def udp_connect(sock: socket.socket, port: int) -> int:
    sock.sendto(struct.pack(">QII", PROTOCOL_ID, 0, 1), ("127.0.0.1", port))
    data = sock.recv(64)
    return int(struct.unpack(">IIQ", data)[2])


def udp_announce(sock: socket.socket, port: int, conn: int, torrent: bytes, n: int,
                 left: int = 100, event: int = 0) -> bytes:
    packet = struct.pack(">QII20s20sQQQIIIiH", conn, 1, 7, torrent,
                         f"-UD0100-{n:012d}".encode(), 0, left, 0, event, 0, 0, 50, 20000 + n)
    sock.sendto(packet, ("127.0.0.1", port))
    return sock.recv(2048)


TORRENTS = [bytes([t]) * 20 for t in range(1, 4)]


def fill(tracker: Shoal, udp: socket.socket, conn: int) -> None:
    """A few hundred peers over HTTP and UDP, some of them completing."""
    for t, torrent in enumerate(TORRENTS):
        for n in range(80):
            tracker.announce(torrent, n, event="started")
        for n in range(0, 80, 7):
            tracker.announce(torrent, n, left=0, event="completed")
        for n in range(30 + t):
            reply = udp_announce(udp, tracker.port, conn, torrent, n)
            assert struct.unpack_from(">I", reply)[0] == 1


def peers_of(tracker: Shoal, torrent: bytes) -> set[bytes]:
    reply = tracker.announce(torrent, 999, numwant=200, left=0)
    peers = reply[b"peers"]
    assert isinstance(peers, bytes)
    return {peers[i : i + 6] for i in range(0, len(peers), 6)}


@pytest.mark.parametrize("how", ["kill -9 after a snapshot", "SIGTERM at once"])
def test_restart_keeps_swarms_completed_counts_and_udp_connection_ids(
    shoal: Shoal, how: str
) -> None:
    shoal.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(WAIT)
        conn = udp_connect(udp, shoal.port)
        fill(shoal, udp, conn)
        before = {t: shoal.scrape(t) for t in TORRENTS}
        assert all(c[2] == 12 for c in before.values())
        if how.startswith("kill"):
            time.sleep(2.5)  # past one snapshot interval (1 s) and many flushes
            shoal.stop(signal.SIGKILL)
        else:
            shoal.stop(signal.SIGTERM)
        shoal.start()
        after = {t: shoal.scrape(t) for t in TORRENTS}
        assert after == before
        # The same peers are handed out (a seeder asking gets every leecher).
        for torrent in TORRENTS:
            assert len(peers_of(shoal, torrent)) == before[torrent][1]
        # A UDP client keeps using its old connection id and is answered.
        reply = udp_announce(udp, shoal.port, conn, TORRENTS[0], 1)
        assert struct.unpack_from(">I", reply)[0] == 1


def test_sighup_reloads_the_torrent_list_without_failing_a_request(tmp_path: Path) -> None:
    allowed, refused = bytes([0xA1]) * 20, bytes([0xB2]) * 20
    listing = tmp_path / "torrents.txt"
    listing.write_text(f"# served torrents\n{allowed.hex()}\n")
    tracker = Shoal(tmp_path, access__torrents='"allow"',
                    access__torrent_list=f'"{listing}"')
    tracker.start()
    try:
        assert b"failure reason" in tracker.announce(refused, 1)
        assert b"failure reason" not in tracker.announce(allowed, 1)
        failures: list[dict[bytes, object]] = []
        stop = threading.Event()

        def keep_announcing() -> None:
            n = 100
            while not stop.is_set():
                n += 1
                reply = tracker.announce(allowed, n % 50 + 100)
                if b"failure reason" in reply:
                    failures.append(reply)

        worker = threading.Thread(target=keep_announcing)
        worker.start()
        try:
            listing.write_text(f"{allowed.hex()}\n{refused.hex()}  # added\n")
            tracker.send(signal.SIGHUP)
            deadline = time.monotonic() + WAIT
            while b"failure reason" in tracker.announce(refused, 1):
                assert time.monotonic() < deadline, "reload never took effect"
                time.sleep(0.1)
            # A bad list keeps the running rules, and SIGHUP never stops the tracker.
            listing.write_text("not a hash\n")
            tracker.send(signal.SIGHUP)
            time.sleep(0.5)
            assert b"failure reason" not in tracker.announce(refused, 2)
        finally:
            stop.set()
            worker.join(WAIT)
        assert failures == []
        assert tracker.proc is not None and tracker.proc.poll() is None
    finally:
        tracker.stop(signal.SIGKILL)
    log = tracker.log.read_text()
    assert "reload: access: 2 allowed torrents" in log
    assert "reload failed, keeping the running configuration" in log
