"""The ws mode of the benchmark: its workload is seeded, its reply check rejects what is not
an announce reply, and a tiny run against Shoal and the reference WebTorrent tracker (npm
bittorrent-tracker) relays offers and answers and prints the side-by-side table. Never a
speed check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.targets import node_tracker_available  # noqa: E402
from bench.ws_load import WsWorkload, check_announce_reply  # noqa: E402

TINY = ["--quick", "--duration", "1", "--warmup", "0.3"]


def run_bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "comparison"]


def test_the_ws_workload_is_the_same_for_the_same_seed() -> None:
    def build(seed: int) -> WsWorkload:
        return WsWorkload.build(sockets=30, torrents=7, torrents_per_socket=3, offers=5,
                                seed=seed)

    a, b = build(3), build(3)
    assert (a.info_hashes, a.peer_ids, a.memberships) == (b.info_hashes, b.peer_ids,
                                                          b.memberships)
    assert build(4).memberships != a.memberships
    assert all(len(set(m)) == 3 for m in a.memberships)
    assert all(len(h) == 20 for h in a.info_hashes + a.peer_ids)


def test_the_ws_reply_check_takes_announce_replies_only() -> None:
    ok = {"action": "announce", "info_hash": "h" * 20, "interval": 120, "complete": 1,
          "incomplete": 3}
    assert check_announce_reply(ok) is None
    assert check_announce_reply({**ok, "failure reason": "no"}) == "failure reason: no"
    assert check_announce_reply({**ok, "action": "scrape"}) is not None
    assert check_announce_reply({k: v for k, v in ok.items() if k != "complete"}) is not None


def test_quick_ws_comparison_relays_offers_and_answers_on_both_trackers(
    tmp_path: Path,
) -> None:
    if not node_tracker_available():
        message = "Node.js or js/node_modules is missing (bash scripts/install-bench-deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " -- CI must run the ws benchmark check", pytrace=False)
        pytest.skip(message)
    result = run_bench(*TINY, "--modes", "ws", "--targets", "shoal,bittorrent-tracker",
                       "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Shoal / bittorrent-tracker" in result.stdout
    rows = records(tmp_path)
    assert {r["target"] for r in rows} == {"shoal", "bittorrent-tracker"}
    for row in rows:
        assert row["mode"] == "ws", row
        assert row["errors"] == 0 and row["fill_errors"] == 0, json.dumps(row)[:2000]
        load = row["runs"][0]["load"]
        assert load["announces"] > 0, row
        assert load["offers_received"] > 0, row
        assert load["answers_received"] > 0, row
        assert row["responses_per_cpu_s"] > 0, row
