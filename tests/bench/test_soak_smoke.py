"""The soak run works: one short attack against a real Shoal prints its table, writes the
results files and finds the tracker alive afterwards. Never a speed check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_short_connect_flood_produces_the_table_and_the_tracker_survives(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--seconds", "1.5", "--attacks", "connect-flood",
         "--rate", "50", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| attack | attacker sent |" in result.stdout
    assert "| connect-flood |" in (tmp_path / "soak.md").read_text()
    (record,) = [json.loads(line) for line in (tmp_path / "soak.jsonl").read_text().splitlines()]
    (row,) = record["rows"]
    assert row["attack"] == "connect-flood"
    assert row["alive_after"] is True
    assert row["attacker_sent"] > 0
    assert row["normal_sent"] > 0
    assert row["peak_rss_mib"] > 0
