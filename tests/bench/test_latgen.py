"""The C latency generator (bench/latgen.c) sends the workload's requests to a real tracker
on an even schedule, checks every reply, stamps each with the kernel's receive time, and
counts what never came back. Never a speed check: figures are only compared with each other
where the definitions order them (a reply's latency from when it was due is never shorter
than from its send)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pytest  # noqa: E402
from support.ports import free_port  # noqa: E402

from bench import latgen  # noqa: E402
from bench.http_load import encode_http_ops  # noqa: E402
from bench.stats import LoadStats  # noqa: E402
from bench.targets import RunningTarget, process_tree, start_target  # noqa: E402
from bench.udp_load import UdpLoad, encode_udp_ops  # noqa: E402
from bench.workload import Workload, WorkloadConfig, source_addresses  # noqa: E402

SMALL = WorkloadConfig(torrents=30, peers=600, mix_length=2_000, seed=3, addresses=8)


@pytest.fixture(scope="module")
def workload() -> Workload:
    return Workload.build(SMALL)


@pytest.fixture(scope="module")
def compiled() -> None:
    why_not = latgen.available()
    if why_not is not None:
        pytest.skip(f"no C generator: {why_not}")


@pytest.fixture
def shoal(workload: Workload, compiled: None) -> Iterator[RunningTarget]:
    target = start_target("shoal", workload.info_hashes)

    async def fill() -> LoadStats:
        load = UdpLoad("127.0.0.1", target.port, sources=source_addresses(SMALL.addresses))
        try:
            return await load.run(encode_udp_ops(workload.fill), count=len(workload.fill),
                                  limit=30, spin=False)
        finally:
            load.close()

    try:
        stats = asyncio.run(fill())
        assert stats.errors == 0 and stats.responses == len(workload.fill)
        yield target
    finally:
        target.stop()


@pytest.mark.parametrize("mode", ["udp", "http-keepalive", "http-close"])
def test_every_reply_is_checked_and_stamped_by_the_kernel(
    shoal: RunningTarget, workload: Workload, mode: str
) -> None:
    ops = (encode_udp_ops(workload.mix) if mode == "udp"
           else encode_http_ops(workload.mix, close=mode == "http-close"))
    result = asyncio.run(latgen.run_paced(
        mode, shoal.port, source_addresses(SMALL.addresses), ops,
        rate=1_000, warmup=0.2, duration=0.5, timeout=2.0, connections=16))
    raw = result.raw
    assert result.errors == 0, raw["error_reasons"]
    assert result.timeouts == 0 and result.skipped == 0
    assert raw["offered"] >= 400  # one every millisecond for half a second
    assert result.responses == raw["offered"]
    assert raw["announces"] > 0 and raw["scrapes"] > 0
    assert raw["no_stamp"] == 0  # every reply carried the kernel's receive timestamp
    assert result.service["n"] == result.schedule["n"] == result.responses
    for q in ("p50_ms", "p99_ms", "max_ms"):
        assert 0 < result.service[q] <= result.schedule[q]
    if mode == "udp":
        # The workload marks some operations for a fresh connect first (its connect share).
        assert raw["connects"] > 0


def test_a_tracker_that_never_answers_shows_as_timeouts(
    workload: Workload, compiled: None
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", free_port()))
    try:
        result = asyncio.run(latgen.run_paced(
            "udp", silent.getsockname()[1], source_addresses(SMALL.addresses),
            encode_udp_ops(workload.mix),
            rate=500, duration=0.3, timeout=0.1))
    finally:
        silent.close()
    assert result.responses == 0 and result.errors == 0
    assert result.timeouts > 0  # the connects, and nothing else could be sent
    assert result.service["n"] == 0 and result.service["p99_ms"] is None


def test_only_loopback_sources_are_accepted(
    workload: Workload, compiled: None, tmp_path: Path
) -> None:
    ops = encode_udp_ops(workload.mix[:10])
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(latgen.run_paced("udp", 9, ["10.0.0.1"], ops, rate=10, duration=0.1))
    # The program itself refuses an input naming another address, with a clear message.
    path = tmp_path / "ops.bin"
    latgen.write_ops(path, ["127.0.1.1"], ops)
    data = bytearray(path.read_bytes())
    data[8] = 10  # the first source's first byte: 10.0.1.1
    path.write_bytes(bytes(data))
    out = subprocess.run([str(latgen.build()), "udp", "9", "10", "0", "0.1", "0.1", "4", str(path)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 2 and "not a loopback address" in out.stderr


def test_the_input_file_holds_every_request_as_encoded(
    workload: Workload, tmp_path: Path
) -> None:
    ops = encode_http_ops(workload.mix[:3], close=False)
    path = tmp_path / "ops.bin"
    latgen.write_ops(path, ["127.0.1.1", "127.0.1.2"], ops)
    data = path.read_bytes()
    assert data[:4] == b"SLG1" and data[4:8] == (2).to_bytes(4, "little")
    assert data[8:16] == bytes([127, 0, 1, 1, 127, 0, 1, 2])
    assert data[16:20] == (3).to_bytes(4, "little")
    assert all(request in data for request in ops.requests)


@pytest.mark.parametrize("mode", ["udp", "http-keepalive", "http-close"])
def test_a_closed_loop_gets_every_request_answered_and_reads_the_trackers_cpu(
    shoal: RunningTarget, workload: Workload, mode: str
) -> None:
    ops = (encode_udp_ops(workload.mix) if mode == "udp"
           else encode_http_ops(workload.mix, close=mode == "http-close"))
    result = asyncio.run(latgen.run_closed(
        mode, shoal.port, source_addresses(SMALL.addresses), ops,
        window=8, warmup=0.2, duration=0.5, timeout=2.0, cpu_pids=process_tree(shoal.pid)))
    raw = result.raw
    assert result.errors == 0, raw["error_reasons"]
    assert result.timeouts == 0 and result.skipped == 0
    assert result.responses > 0 and result.responses == raw["offered"]
    assert result.cpu_s is not None and result.cpu_s >= 0
    if mode == "udp":
        assert 0 < result.connects <= raw["connects"]
    else:
        assert result.connects == 0


def test_a_closed_loop_keeps_no_more_than_its_window_out(
    workload: Workload, compiled: None
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", free_port()))
    try:
        result = asyncio.run(latgen.run_closed(
            "udp", silent.getsockname()[1], source_addresses(SMALL.addresses),
            encode_udp_ops(workload.mix), window=5, duration=0.3, timeout=0.1))
    finally:
        silent.close()
    assert result.responses == 0 and result.cpu_s is None  # no cpu_pids given
    # Nothing is answered, so each window of requests waits out the timeout before the
    # next goes: a handful of windows in 0.3 s, not the millions an open tap would send.
    assert 5 <= result.raw["offered"] <= 5 * 6
