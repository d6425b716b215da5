"""Interop with the reference WebTorrent tracker client: two npm `bittorrent-tracker` clients
in Node, with WebRTC from `@roamhq/wrtc`, announce one torrent to Shoal over
ws://127.0.0.1; Shoal relays the leecher's offer and the seeder's answer, the two WebRTC
peers connect and exchange a message, scrapes count them, and a stop and a closed socket
take them out of the swarm (js/tracker-clients.mjs runs the clients; this test checks what
they saw and what Shoal counted).

Node.js and the npm packages come from scripts/install-js-deps.sh (js/package-lock.json).
On CI (CI=true) a missing one fails the test; elsewhere it skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from support.running import RunningTracker
from support.ws_tracker import websocket_stats, websocket_tracker

REPO_ROOT = Path(__file__).resolve().parents[2]
JS = REPO_ROOT / "js"
SCRIPT = JS / "tracker-clients.mjs"
PACKAGES = ("bittorrent-tracker", "@roamhq/wrtc")
STEP_SECONDS = 15
INFO_HASH = hashlib.sha1(b"shoal bittorrent-tracker interop").hexdigest()


def cannot_run(message: str) -> NoReturn:
    """Fail on CI (where this test must run), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- CI must run the bittorrent-tracker interop test",
                    pytrace=False)
    pytest.skip(message)


def node_binary() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        cannot_run("Node.js not found: bash scripts/install-js-deps.sh")
    for package in PACKAGES:
        if not (JS / "node_modules" / package / "package.json").is_file():
            cannot_run(f"npm package {package} missing from js/node_modules: "
                       "bash scripts/install-js-deps.sh")
    return node


@pytest.fixture
def tracker() -> Iterator[RunningTracker]:
    yield from websocket_tracker()


def run_clients(node: str, rt: RunningTracker) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(SCRIPT), f"ws://127.0.0.1:{rt.port()}", INFO_HASH, str(STEP_SECONDS)],
        cwd=JS, capture_output=True, text=True, timeout=10 * STEP_SECONDS, check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"the clients printed nothing (exit {done.returncode}): {done.stderr[-3000:]}"
    seen = json.loads(lines[-1])
    assert isinstance(seen, dict)
    assert done.returncode == 0 and "error" not in seen, (
        f"{seen.get('error')}\nwhat the clients saw: {json.dumps(seen, indent=1)}\n"
        f"stderr: {done.stderr[-3000:]}"
    )
    return seen


def test_reference_clients_find_each_other_connect_and_leave_through_shoal(
    tracker: RunningTracker,
) -> None:
    node = node_binary()
    seen = run_clients(node, tracker)
    seeder, leecher = seen["seeder"], seen["leecher"]
    seeder_id = b"-SE0001-seeder------".hex()
    leecher_id = b"-LE0001-leecher-----".hex()

    # Announce replies, as the client reads them ('update' events).
    assert seeder["updates"][0] == {
        "complete": 1, "incomplete": 0, "interval": 1800, "infoHash": INFO_HASH}
    assert leecher["updates"][0] == {
        "complete": 1, "incomplete": 1, "interval": 1800, "infoHash": INFO_HASH}
    # The offer went to the seeder and the answer came back: each side's 'peer' event names
    # the other, and the WebRTC connection carried a message both ways.
    assert seeder["peers"] == [leecher_id]
    assert leecher["peers"] == [seeder_id]
    assert seeder["connected"] and leecher["connected"]
    assert seeder["heard"] == "hello from the leecher"
    assert leecher["heard"] == "hello from the seeder"
    # Scrapes count one seeder and one leecher; after the leecher's stop, the seeder alone.
    both = {"complete": 1, "incomplete": 1, "downloaded": 0, "infoHash": INFO_HASH}
    assert seeder["scrapes"][0] == both
    assert leecher["scrapes"] == [both]
    assert seeder["scrapes"][1] == {**both, "incomplete": 0}
    # The stop is answered like any announce, with the leecher already gone.
    assert leecher["updates"][-1]["incomplete"] == 0
    assert seeder["warnings"] == [] and leecher["warnings"] == []

    stats = websocket_stats(tracker)
    assert stats["offers_relayed"] >= 1
    assert stats["answers_relayed"] >= 1
    assert stats["answers_refused"] == 0
    # The seeder closed its socket without stopping: the socket and the peer are gone.
    deadline = time.monotonic() + 10
    while (stats := websocket_stats(tracker))["open"] or stats["peers"]:
        assert time.monotonic() < deadline, f"the clients' peers outlived their sockets: {stats}"
        time.sleep(0.05)
    assert stats["swarms"] == 0
