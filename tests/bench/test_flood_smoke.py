"""The spoofed-flood measurement works: both UDP paths of a real Shoal count the datagrams
with made-up connection ids it sends and report a CPU cost for each. Never a speed check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.native import native_udp

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_small_flood_is_counted_on_both_paths() -> None:
    native_udp()  # the native path must be there to be measured
    result = subprocess.run(
        [sys.executable, "-m", "bench.flood", "--datagrams", "2000"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for engine in ("native", "python"):
        found = re.search(rf"^{engine} +([\d,]+) datagrams counted", result.stdout, re.M)
        assert found is not None, result.stdout
        assert int(found.group(1).replace(",", "")) > 0
    assert "python / native CPU per spoofed datagram" in result.stdout
