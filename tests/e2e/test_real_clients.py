"""Real BitTorrent clients find each other through Shoal and move a file intact.

Each test runs its own tracker on free loopback ports, seeds a random file with one client
and downloads it with another (DHT, PEX and local peer discovery off, so the tracker is the
only way the clients can meet), checks the copy's SHA-256, and then checks the tracker's
scrape counts: the download is counted once, and a client that stops leaves the swarm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from support.redis_server import RedisServer

from .clients import (
    Aria2,
    ProcessRegistry,
    Torrent,
    Tracker,
    Transmission,
    compact_peers,
    make_payload,
    make_torrent,
    sha256_of,
    wait_until,
)
from .conftest import require_clients, require_ipv6_loopback

pytestmark = [pytest.mark.realclient, pytest.mark.timeout(300)]

PAYLOAD_SIZE = 4 * 1024 * 1024 + 12345  # a few MiB, with a short last piece
SWARM_TIMEOUT = 90.0  # seconds for the leecher to hold a complete, correct copy
ANNOUNCE_TIMEOUT = 45.0  # seconds for an announce to show in the scrape counts
# Short intervals without jitter make clients re-announce within the test's time bounds
# (a seeder learns of a leecher only from its next announce); the access log shows what
# the clients sent when a test fails.
TRACKER_SETTINGS = (
    "tracker.interval=30",
    "tracker.min_interval=5",
    "tracker.interval_jitter=0",
    "http.access_log=true",
)


class Client(Protocol):
    """What a test needs of a running client, whichever it is."""

    name: str
    data_path: Path

    @property
    def peer_port(self) -> int: ...

    def check_running(self) -> None: ...

    def describe(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class TransmissionClient:
    daemon: Transmission
    data_path: Path
    name: str = "Transmission"

    @property
    def peer_port(self) -> int:
        return self.daemon.peer_port

    def check_running(self) -> None:
        self.daemon.check_running()

    def describe(self) -> str:
        return self.daemon.describe()

    def stop(self) -> None:
        self.daemon.stop_torrent()


@dataclass
class Aria2Client:
    aria2: Aria2
    data_path: Path
    name: str = "aria2"

    @property
    def peer_port(self) -> int:
        return self.aria2.listen_port

    def check_running(self) -> None:
        self.aria2.check_running()

    def describe(self) -> str:
        return "aria2 running" if self.aria2.proc and self.aria2.proc.running() else "aria2 gone"

    def stop(self) -> None:
        self.aria2.stop()


def start_transmission(
    processes: ProcessRegistry, workdir: Path, torrent: Torrent, data_dir: Path, family: str
) -> TransmissionClient:
    daemon = Transmission(processes, workdir, family)
    daemon.start()
    daemon.add(torrent, data_dir)
    return TransmissionClient(daemon, data_dir / torrent.name)


def start_aria2(
    processes: ProcessRegistry,
    workdir: Path,
    torrent: Torrent,
    data_dir: Path,
    *,
    seed: bool,
    family: str,
    udp_tracker: bool,
) -> Aria2Client:
    aria2 = Aria2(
        processes,
        workdir,
        torrent,
        data_dir,
        seed=seed,
        ipv6=family == "ipv6",
        udp_tracker=udp_tracker,
    )
    aria2.start()
    return Aria2Client(aria2, data_dir / torrent.name)


def start_client(
    kind: str,
    processes: ProcessRegistry,
    workdir: Path,
    torrent: Torrent,
    data_dir: Path,
    *,
    seed: bool,
    family: str,
    udp_tracker: bool,
) -> Client:
    if kind == "transmission":
        return start_transmission(processes, workdir, torrent, data_dir, family)
    return start_aria2(
        processes, workdir, torrent, data_dir, seed=seed, family=family, udp_tracker=udp_tracker
    )


def run_swarm(
    processes: ProcessRegistry,
    workdir: Path,
    *,
    seeder_kind: str,
    leecher_kind: str,
    family: str,
    transport: str,
    redis_url: str | None = None,
) -> None:
    """With ``redis_url``, two tracker nodes share the swarm through that Redis: the
    seeder announces to one, the leecher and the test's probe to the other."""
    require_clients("transmission-daemon", "aria2c")
    if family == "ipv6":
        require_ipv6_loopback()
    host = "::1" if family == "ipv6" else "127.0.0.1"
    udp = transport == "udp"

    settings = TRACKER_SETTINGS
    if redis_url is not None:
        settings += ("storage.peers=redis", f"storage.redis_url={redis_url}",
                     f"storage.redis_namespace=e2e-{os.urandom(4).hex()}")
    tracker = Tracker(processes, workdir / "tracker", [host])
    tracker.start(settings)
    announce_url = tracker.udp_announce_url(host) if udp else tracker.http_announce_url(host)
    other = tracker
    if redis_url is not None:
        other = Tracker(processes, workdir / "tracker-b", [host])
        other.start(settings)

    seed_dir = workdir / "seeder" / "data"
    payload = seed_dir / f"shoal-e2e-{os.urandom(4).hex()}.bin"
    make_payload(payload, PAYLOAD_SIZE)
    torrent = make_torrent(payload, announce_url, workdir / "payload.torrent")
    leecher_torrent = torrent
    if other is not tracker:  # the same info dict, announcing to the other node
        other_url = other.udp_announce_url(host) if udp else other.http_announce_url(host)
        leecher_torrent = make_torrent(payload, other_url, workdir / "payload-b.torrent")
        assert leecher_torrent.info_hash == torrent.info_hash

    def scrape() -> dict[str, int]:
        return tracker.scrape(host, torrent.info_hash)

    # 1. The seeder announces and the tracker counts it.
    seeder = start_client(
        seeder_kind, processes, workdir / "seeder", torrent, seed_dir,
        seed=True, family=family, udp_tracker=udp,
    )  # fmt: skip

    def seeder_counted() -> bool:
        seeder.check_running()
        return scrape()["complete"] >= 1

    wait_until(
        f"{seeder.name} to announce as a seeder (scrape complete >= 1)",
        seeder_counted,
        timeout=ANNOUNCE_TIMEOUT,
        state=lambda: f"scrape={scrape()}; seeder: {seeder.describe()}",
    )

    # 2. A probe peer of the test's own is handed the seeder's loopback address and the
    #    port the seeder listens on (what the client announced), then leaves the swarm.
    probe_id = b"-SHOALTEST-" + os.urandom(9)
    reply = other.announce(host, torrent.info_hash, probe_id, 1, torrent.size, "started")
    peers = compact_peers(reply)
    assert (host, seeder.peer_port) in peers, (
        f"tracker handed out {sorted(peers)}, not the seeder at [{host}]:{seeder.peer_port}"
    )
    other.announce(host, torrent.info_hash, probe_id, 1, torrent.size, "stopped")

    # 3. The leecher downloads an intact copy.
    leech_dir = workdir / "leecher" / "data"
    leecher = start_client(
        leecher_kind, processes, workdir / "leecher", leecher_torrent, leech_dir,
        seed=False, family=family, udp_tracker=udp,
    )  # fmt: skip

    def copy_is_intact() -> bool:
        seeder.check_running()
        leecher.check_running()
        return leecher.data_path.exists() and sha256_of(leecher.data_path) == torrent.sha256

    wait_until(
        f"{leecher.name} to download an intact copy from {seeder.name}",
        copy_is_intact,
        timeout=SWARM_TIMEOUT,
        interval=1.0,
        state=lambda: (
            f"scrape={scrape()}; seeder: {seeder.describe()}; leecher: {leecher.describe()}"
        ),
    )

    # 4. The leecher's `completed` announce is counted once; it now seeds too.
    final = {"complete": 2, "incomplete": 0, "downloaded": 1}
    wait_until(
        f"scrape to show {final} after {leecher.name}'s completed announce",
        lambda: scrape() == final,
        timeout=ANNOUNCE_TIMEOUT,
        state=lambda: f"scrape={scrape()}; leecher: {leecher.describe()}",
    )

    # 5. A client that shuts down announces `stopped` and leaves the swarm.
    leecher.stop()
    after_stop = {"complete": 1, "incomplete": 0, "downloaded": 1}
    wait_until(
        f"scrape to show {after_stop} after {leecher.name} stopped",
        lambda: scrape() == after_stop,
        timeout=15,
        state=lambda: f"scrape={scrape()}",
    )


def test_transmission_seeds_to_aria2_over_ipv4_http(
    processes: ProcessRegistry, workdir: Path
) -> None:
    run_swarm(
        processes, workdir,
        seeder_kind="transmission", leecher_kind="aria2", family="ipv4", transport="http",
    )  # fmt: skip


def test_aria2_seeds_to_transmission_over_ipv6_http(
    processes: ProcessRegistry, workdir: Path
) -> None:
    run_swarm(
        processes, workdir,
        seeder_kind="aria2", leecher_kind="transmission", family="ipv6", transport="http",
    )  # fmt: skip


def test_transmission_seeds_to_aria2_over_ipv4_udp(
    processes: ProcessRegistry, workdir: Path
) -> None:
    run_swarm(
        processes, workdir,
        seeder_kind="transmission", leecher_kind="aria2", family="ipv4", transport="udp",
    )  # fmt: skip


def test_transmission_seeds_to_aria2_through_two_nodes_sharing_redis(
    processes: ProcessRegistry, workdir: Path
) -> None:
    """The seeder announces to one tracker node and the leecher to another; they meet
    because both nodes keep the swarm in one Redis."""
    server = RedisServer(workdir / "redis")
    try:
        run_swarm(
            processes, workdir,
            seeder_kind="transmission", leecher_kind="aria2", family="ipv4",
            transport="http", redis_url=server.url,
        )  # fmt: skip
    finally:
        server.stop()
