"""The benchmark code works: a tiny, short run against Shoal (and opentracker when it is
installed) counts responses, sees no errors and prints its table. Never a speed check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import latgen  # noqa: E402
from bench.bencode import bdecode  # noqa: E402
from bench.http_load import check_reply  # noqa: E402
from bench.workload import Announce, Event, Scrape, Workload, WorkloadConfig  # noqa: E402

TINY = ["--quick", "--duration", "1", "--warmup", "0.3", "--latency-duration", "0.5"]


def run_bench(*args: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def records(out: Path, kind: str) -> list[dict[str, object]]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_workload_is_the_same_for_the_same_seed() -> None:
    config = WorkloadConfig(torrents=50, peers=300, mix_length=500, seed=7)
    a, b = Workload.build(config), Workload.build(config)
    assert a.info_hashes == b.info_hashes
    assert a.fill == b.fill
    assert a.mix == b.mix
    assert (
        Workload.build(WorkloadConfig(torrents=50, peers=300, mix_length=500, seed=8)).mix != a.mix
    )


def test_workload_has_the_documented_mix() -> None:
    w = Workload.build(WorkloadConfig(torrents=1_000, peers=10_000, mix_length=20_000))
    sizes = sorted(w.swarm_sizes(), reverse=True)
    assert sizes[0] > 20 * sizes[len(sizes) // 2]  # a few huge swarms, a long tail
    assert all(a.event is Event.STARTED for a in w.fill)
    assert 0.07 < sum(a.left == 0 for a in w.fill) / len(w.fill) < 0.13  # about 10% seeders
    scrapes = [op for op in w.mix if isinstance(op, Scrape)]
    assert 0.08 < len(scrapes) / len(w.mix) < 0.12
    assert all(1 <= len(s.info_hashes) <= 10 for s in scrapes)
    announces = [op for op in w.mix if isinstance(op, Announce)]
    assert all(a.numwant == 50 for a in announces)
    assert {a.event for a in announces} == set(Event)


def test_reply_check_rejects_failures_and_accepts_announces() -> None:
    ok = b"d8:completei1e10:incompletei0e8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e"
    assert bdecode(ok) == {
        b"complete": 1,
        b"incomplete": 0,
        b"interval": 1800,
        b"peers": b"\x7f\x00\x00\x01\x1a\xe1",
    }
    assert check_reply(1, 200, ok) is None
    assert check_reply(1, 200, b"d14:failure reason3:no!e") == "failure reason: no!"
    assert check_reply(1, 500, ok) == "HTTP status 500"
    assert check_reply(1, 200, b"d8:intervali1") is not None


def test_quick_comparison_against_shoal(tmp_path: Path) -> None:
    result = run_bench(*TINY, "--targets", "shoal", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| target | mode | responses/s |" in result.stdout
    rows = records(tmp_path, "comparison")
    assert {r["mode"] for r in rows} == {"udp", "http-keepalive", "http-close", "ws"}
    for row in rows:
        assert row["rounds"] == 1, row
        assert row["errors"] == 0, row
        assert row["fill_errors"] == 0, row
        run = row["runs"][0]  # type: ignore[index]
        assert run["load"]["responses"] > 0, row
        assert row["responses_per_cpu_s"] > 0, row  # type: ignore[operator]
        assert row["tracker_cpu_share"] is not None, row
        # The peak phase goes by the C generator's closed loop when it can be built (ws
        # has only the Python generator).
        c_peak = row["mode"] != "ws" and latgen.available() is None
        assert row["peak_generator"] == ("c" if c_peak else "python"), row
    report = (tmp_path / "latest.md").read_text()
    # One row per mode in the main table, and one per mode but ws in the latency table.
    for mode in ("udp", "http-keepalive", "http-close"):
        assert report.count(f"| shoal | {mode} |") == 2, mode
    assert report.count("| shoal | ws |") == 1
    assert "Latency at half of the peak" in report
    assert "Peers: 16 source addresses (127.0.1.1 to 127.0.1.16" in report
    udp = next(r for r in rows if r["mode"] == "udp")
    assert udp["connect_share"] is not None and udp["connect_share"] > 0, udp
    assert udp["paced_rate"] > 0 and udp["paced_p99_ms"] is not None, udp


def test_the_python_generator_still_runs_the_peak_phase(tmp_path: Path) -> None:
    result = run_bench(*TINY, "--targets", "shoal", "--modes", "udp,http-keepalive",
                       "--peak-generator", "python", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = records(tmp_path, "comparison")
    assert len(rows) == 2
    for row in rows:
        assert row["peak_generator"] == "python" and row["errors"] == 0, row
        assert row["runs"][0]["load"]["responses"] > 0, row  # type: ignore[index]
    assert "python, " in (tmp_path / "latest.md").read_text()  # its busy share is shown


@pytest.mark.skipif(
    shutil.which("opentracker") is None,
    reason="opentracker is not installed "
    "(bash scripts/install-bench-deps.sh); Shoal was still checked above",
)
def test_quick_comparison_against_opentracker_prints_the_ratio(tmp_path: Path) -> None:
    result = run_bench(
        *TINY, "--modes", "udp,http-close", "--duration", "0.5", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Shoal / opentracker" in result.stdout
    for row in records(tmp_path, "comparison"):
        assert row["errors"] == 0, row
        assert row["runs"][0]["load"]["responses"] > 0, row  # type: ignore[index]


def test_quick_scaling_against_shoal(tmp_path: Path) -> None:
    result = run_bench(
        "scaling", "--quick", "--targets", "shoal", "--max-peers", "100", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    swarm = records(tmp_path, "scaling-swarm")
    assert [r["swarm_peers"] for r in swarm] == [1, 10, 100]
    assert all(r["responses"] > 0 and r["errors"] == 0 for r in swarm)  # type: ignore[operator]
    assert [r["tracker_swarm"] for r in swarm] == [1, 10, 100]
    # The swarm points go by the C generator's closed loop when it can be built, which
    # reads the tracker's CPU itself.
    generator = "c" if latgen.available() is None else "python"
    assert all(r["generator"] == generator for r in swarm), swarm
    assert all(r["tracker_cpu_share"] is not None for r in swarm), swarm
    memory = records(tmp_path, "scaling-memory")
    assert [r["peers"] for r in memory] == [100]
    sweep = records(tmp_path, "scaling-sweep")
    assert [r["peers"] for r in sweep] == [100]
    assert sweep[0]["all_expired"] is True
    report = (tmp_path / "scaling.md").read_text()
    assert "bytes per peer" in report
    assert "us per peer removed" in report
    assert "| tracker CPU |" in report


def test_the_python_generator_still_runs_the_scaling_swarm_series(tmp_path: Path) -> None:
    result = run_bench(
        "scaling", "--quick", "--series", "swarm", "--generator", "python", "--targets",
        "shoal", "--max-peers", "10", "--out", str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    swarm = records(tmp_path, "scaling-swarm")
    assert [r["swarm_peers"] for r in swarm] == [1, 10]
    for row in swarm:
        assert row["generator"] == "python" and row["errors"] == 0, row
        assert row["responses"] > 0 and row["tracker_cpu_share"] is not None, row  # type: ignore[operator]
    assert "the Python generator" in (tmp_path / "scaling.md").read_text()
