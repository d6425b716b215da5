"""Private mode with real clients: each client's announce URL carries its user's passkey
(a BEP 27 private torrent), the download completes, and the users' stats then show the
bytes moved (within the protocol's overhead) and one snatch."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .clients import ProcessRegistry, Tracker, make_payload, make_torrent, sha256_of, wait_until
from .conftest import require_clients
from .test_real_clients import SWARM_TIMEOUT, TRACKER_SETTINGS, start_client

pytestmark = [pytest.mark.realclient, pytest.mark.timeout(300)]

PAYLOAD_SIZE = 2 * 1024 * 1024 + 4321
TOKEN = "e2e-private-token"
STATS_TIMEOUT = 60.0  # seconds for the seeder's next announce to report its upload


def api(tracker: Tracker, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{tracker.admin_port}{path}", data=data,
                                 method=method, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as reply:
        return json.loads(reply.read())


@pytest.mark.parametrize(("seeder_kind", "leecher_kind"), [
    ("transmission", "aria2"), ("aria2", "transmission")])
def test_a_private_torrent_downloads_and_is_accounted(
    processes: ProcessRegistry, workdir: Path, seeder_kind: str, leecher_kind: str
) -> None:
    require_clients("transmission-daemon", "aria2c")
    host = "127.0.0.1"
    tracker = Tracker(processes, workdir / "tracker", [host])
    tracker.start([*TRACKER_SETTINGS, "tracker.mode=private", f"admin.api_token={TOKEN}",
                   "accounting.flush_interval=1"])
    seeder_user = api(tracker, "POST", "/api/v1/users", {"id": 1})
    leecher_user = api(tracker, "POST", "/api/v1/users", {"id": 2})

    seed_dir = workdir / "seeder" / "data"
    payload = seed_dir / f"shoal-private-{os.urandom(4).hex()}.bin"
    make_payload(payload, PAYLOAD_SIZE)
    base = f"http://{host}:{tracker.port}"
    seeder_torrent = make_torrent(payload, f"{base}/{seeder_user['passkey']}/announce",
                                  workdir / "seeder.torrent", private=True)
    leecher_torrent = make_torrent(payload, f"{base}/{leecher_user['passkey']}/announce",
                                   workdir / "leecher.torrent", private=True)
    assert seeder_torrent.info_hash == leecher_torrent.info_hash
    api(tracker, "POST", "/api/v1/torrents", {"info_hash": seeder_torrent.info_hash.hex()})

    seeder = start_client(seeder_kind, processes, workdir / "seeder", seeder_torrent, seed_dir,
                          seed=True, family="ipv4", udp_tracker=False)
    wait_until(f"{seeder.name} to announce with its passkey",
               lambda: api(tracker, "GET", "/api/v1/users/1/stats")["totals"]["announces"] > 0,
               timeout=45, state=seeder.describe)
    leech_dir = workdir / "leecher" / "data"
    leecher = start_client(leecher_kind, processes, workdir / "leecher", leecher_torrent,
                           leech_dir, seed=False, family="ipv4", udp_tracker=False)

    def copy_is_intact() -> bool:
        seeder.check_running()
        leecher.check_running()
        return leecher.data_path.exists() and sha256_of(leecher.data_path) == (
            seeder_torrent.sha256)

    wait_until(f"{leecher.name} to download an intact copy", copy_is_intact,
               timeout=SWARM_TIMEOUT, interval=1.0,
               state=lambda: f"seeder: {seeder.describe()}; leecher: {leecher.describe()}")

    def stats() -> tuple[dict[str, Any], dict[str, Any]]:
        return (api(tracker, "GET", "/api/v1/users/1/stats")["totals"],
                api(tracker, "GET", "/api/v1/users/2/stats")["totals"])

    def accounted() -> bool:
        up, down = stats()
        return down["snatches"] == 1 and down["downloaded"] >= PAYLOAD_SIZE and (
            up["uploaded"] >= PAYLOAD_SIZE)

    wait_until("the users' stats to show the transfer and one snatch", accounted,
               timeout=STATS_TIMEOUT, interval=1.0, state=lambda: str(stats()))
    up, down = stats()
    overhead = PAYLOAD_SIZE // 10  # piece re-requests and the like, never a second copy
    assert PAYLOAD_SIZE <= down["downloaded"] <= PAYLOAD_SIZE + overhead
    assert PAYLOAD_SIZE <= up["uploaded"] <= PAYLOAD_SIZE + overhead
    assert (up["snatches"], up["downloaded"]) == (0, 0)
