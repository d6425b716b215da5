"""The side-by-side comparison: ``python -m bench [options]``.

For every round, mode and target (targets alternate order from round to round) a fresh
tracker is started on free ports and pinned to CPU 1 (the generator runs on CPU 0), the
workload's swarms are filled (one ``started`` announce per pair, by UDP when the tracker
speaks it), the mix is replayed for ``--warmup`` seconds and then measured for
``--duration`` seconds in a closed loop (the peak phase: ``--udp-window`` UDP requests or
``--http-connections`` HTTP requests in flight, each next one sent as soon as one is
answered), then for ``--latency-duration`` seconds paced (open loop: requests go out on a
schedule whatever the replies do) at half the tracker's peak, and the tracker is stopped.
The peak is the responses per tracker CPU-second just measured, what the tracker's one
core answers when it is busy all the time; p50 and p99 of that paced phase are the latency
a tracker shows at half load.

Both measured phases are sent by the C generator (:mod:`bench.latgen`) when the system C
compiler can build it: in the peak phase one Python core could not keep a compiled
tracker busy (it then idles between small batches and the figure per CPU-second measures
its wake-ups more than its work), and in the paced phase its even schedule and kernel
receive timestamps make the latencies the tracker's and not the Python generator's. The
Python generators (``--peak-generator python``, ``--latency-generator python``, or no C
compiler) remain; the paced Python one is capped at the rate the peak phase reached, and
the latency table says so. ``--latency-generator both`` runs the Python one first as
well, to show the difference.

Requests come from ``--addresses`` loopback source addresses (256: 127.0.1.1 to
127.0.2.6; every socket is bound to its peer's address), about 10% of the pairs are
seeders, and ``--udp-connect-share`` of the UDP operations (5%) are preceded by a fresh
connect (see :mod:`bench.workload`); the UDP connect share measured is reported. Shoal's
per-address limits do not distort this: loopback peers are exempt from
``tracker.max_peers_per_ip``, at most ``--http-connections`` (64) connections are open per
address against ``http.max_connections_per_ip`` (256), and the UDP side has no
per-address limit; Shoal runs with its defaults.

The figure to compare is responses per tracker CPU-second: it stays fair whichever side
sets the pace (the C generator reads the tracker's CPU time from /proc at the two ends of
the recorded part itself). The Python generator busy-polls (see :mod:`bench.spin`), and
the C one never sleeps, so that the cost of waking the generator on loopback is not billed
to the tracker. Medians over the rounds are
printed as a markdown table with the Shoal/opentracker ratio per mode, written to
``<out>/latest.md``, and appended as JSON lines to ``<out>/results.jsonl`` with the
machine they came from.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import latgen
from bench.http_load import HttpLoad, HttpOps, encode_http_ops
from bench.private import PrivateAccounts
from bench.profile import PY_SPY_HINT, py_spy, start_profile, summarize_profile
from bench.stats import LoadStats
from bench.targets import (
    BASE_ENV,
    NATIVE_TARGET,
    NODE_TARGET,
    PRIVATE_TARGET,
    PYTHON_TARGET,
    REDIS_TARGET,
    REPO_ROOT,
    TARGET_NAMES,
    RunningTarget,
    TargetError,
    cpus_busy_seconds,
    generator_cpu,
    node_tracker_available,
    node_tracker_version,
    opentracker_available,
    own_cpu_seconds,
    process_tree,
    start_target,
    tracker_cpu,
)
from bench.udp_load import UdpLoad, UdpOps, encode_udp_ops
from bench.workload import (
    DEFAULT_ADDRESSES,
    Workload,
    WorkloadConfig,
    address_for,
    source_addresses,
)
from bench.ws_load import WsLoad, WsWorkload

MODES = ("udp", "http-keepalive", "http-close", "ws")
# The targets the ws mode (WebTorrent over WebSocket) runs for; the reference WebTorrent
# tracker runs in that mode only (opentracker has no WebSocket tracker, and Shoal keeps its
# WebSocket peers in memory whatever its store).
WS_TARGETS = ("shoal", "shoal-base", NODE_TARGET)
DEFAULT_OUT = REPO_ROOT / "bench" / "results"
# The targets (issue 11), as Shoal / opentracker in responses per tracker CPU-second.
TARGET_RATIOS = {"udp": 1.0, "http-keepalive": 2.5, "http-close": 0.8}
# Issue 11's latency goal: p99 at half of the peak rate under this many milliseconds.
LATENCY_GOAL_MS = 2.0
# The C generator's paced phase starts with this long on the same schedule, not recorded
# (it opens its own HTTP connections, where the Python one reuses the measured run's).
LATENCY_WARMUP_S = 0.5
# The C generator's peak phase starts with this long in its closed loop, not recorded
# (HTTP connections get opened, UDP sockets their connection ids).
PEAK_WARMUP_S = 0.5

DEFAULTS: dict[str, float] = {
    "duration": 12.0,
    "warmup": 4.0,
    "latency_duration": 4.0,
    "rounds": 3,
    "torrents": 10_000,
    "peers": 100_000,
    "mix_length": 100_000,
    "ws_sockets": 400,
    "ws_torrents": 100,
    "addresses": DEFAULT_ADDRESSES,
}
QUICK_DEFAULTS: dict[str, float] = {
    "duration": 2.0,
    "warmup": 0.5,
    "latency_duration": 1.0,
    "rounds": 1,
    "torrents": 200,
    "peers": 2_000,
    "mix_length": 5_000,
    "ws_sockets": 20,
    "ws_torrents": 5,
    "addresses": 16,
}

# Busy-poll the generator's loop while loading (see bench/spin.py); --no-spin turns it off.
SPIN = True

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def event_loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {getattr(uvloop, '__version__', '?')}"


def pin_generator() -> None:
    """Pin this process (the load generator) to CPU 0 when there is more than one CPU."""
    cpu = generator_cpu()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _command_output(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine_info() -> dict[str, object]:
    """The machine and software the figures came from."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "event_loop": event_loop_name(),
        "opentracker": _command_output(["dpkg-query", "-W", "-f=${Version}", "opentracker"]),
        "bittorrent_tracker": node_tracker_version(),
        "shoal_commit": _command_output(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]
        ),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
    }


@dataclass
class Measurement:
    """One (round, target, mode) run."""

    target: str
    mode: str
    round: int
    responses_per_s: float = 0.0
    tracker_cpu_s: float = 0.0
    tracker_cpu_share: float | None = None  # of one core, over the peak phase
    responses_per_cpu_s: float = 0.0
    generator_cpu_share: float = 0.0
    generator_busy_share: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    timeouts: int = 0
    peak_rss_kib: int = 0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    # The peak phase's generator: "c" (bench/latgen.c, closed loop) or "python".
    peak_generator: str = ""
    paced_rate: float = 0.0  # offered, requests per second
    paced_capped: bool = False  # the generator could not offer half the peak
    paced_responses_per_s: float = 0.0
    paced_tracker_cpu_share: float | None = None
    paced_p50_ms: float | None = None
    paced_p99_ms: float | None = None
    paced_errors: int = 0
    # The paced phase's generator: "c" (bench/latgen.c) or "python". With the C one,
    # paced_p50/p99 are from the send (kernel receive stamps), and these from the schedule.
    paced_generator: str = ""
    paced_schedule_p99_ms: float | None = None
    paced_p999_ms: float | None = None
    # --latency-generator both: the Python generator's paced figures at the same rate.
    paced_python_p50_ms: float | None = None
    paced_python_p99_ms: float | None = None
    connect_share: float | None = None  # UDP: connects among the replies measured
    # CPU time other processes took on the tracker's and the generator's cores, as a share
    # of one core: a busy shared machine shows here (and in the latencies).
    others_cpu_share: float | None = None
    paced_others_cpu_share: float | None = None
    fill_s: float = 0.0
    fill_errors: int = 0
    fill_protocol: str = ""
    skipped: str = ""
    store_cpu_s: float | None = None  # the shoal-redis target's redis-server
    store_scripts_per_response: float | None = None
    store_commands_per_response: float | None = None
    load: dict[str, object] = field(default_factory=dict)
    fill: dict[str, object] = field(default_factory=dict)


class EncodedWorkload:
    """The workload's requests encoded once per protocol (and per public or private
    tracker: with passkeys), on first use."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._udp: dict[tuple[str, bool], UdpOps] = {}
        self._http: dict[tuple[str, bool, bool], HttpOps] = {}
        self._accounts: PrivateAccounts | None = None

    @property
    def accounts(self) -> PrivateAccounts:
        """The users (one per peer) and torrents of the shoal-private target."""
        if self._accounts is None:
            self._accounts = PrivateAccounts.for_workload(self.workload)
        return self._accounts

    def udp(self, part: str, private: bool = False) -> UdpOps:
        key = (part, private)
        if key not in self._udp:
            passkey_of = self.accounts.passkey_of if private else None
            self._udp[key] = encode_udp_ops(getattr(self.workload, part), passkey_of=passkey_of)
        return self._udp[key]

    def http(self, part: str, close: bool, private: bool = False) -> HttpOps:
        key = (part, close, private)
        if key not in self._http:
            passkey_of = self.accounts.passkey_of if private else None
            self._http[key] = encode_http_ops(
                getattr(self.workload, part), close=close, passkey_of=passkey_of
            )
        return self._http[key]


Generator = UdpLoad | HttpLoad


def make_generator(mode: str, port: int, args: argparse.Namespace) -> Generator:
    sources = source_addresses(args.addresses)
    if mode == "udp":
        return UdpLoad(
            "127.0.0.1", port, sources=sources, window=args.udp_window, seed=args.seed
        )
    return HttpLoad(
        "127.0.0.1",
        port,
        "keepalive" if mode == "http-keepalive" else "close",
        connections=args.http_connections,
        sources=sources,
    )


async def _load(
    gen: Generator, encoded: EncodedWorkload, mode: str, part: str, private: bool, **kw: Any
) -> LoadStats:
    kw.setdefault("spin", SPIN)
    if isinstance(gen, UdpLoad):
        return await gen.run(encoded.udp(part, private), **kw)
    return await gen.run(encoded.http(part, close=mode == "http-close", private=private), **kw)


async def fill_target(
    target: RunningTarget, encoded: EncodedWorkload, args: argparse.Namespace
) -> tuple[LoadStats, str]:
    """Announce every (peer, torrent) pair once, by UDP when the tracker has it."""
    n = len(encoded.workload.fill)
    private = target.name == PRIVATE_TARGET
    gen: Generator
    sources = source_addresses(args.addresses)
    if target.udp:
        # 128 in flight: more can overflow a tracker's default socket receive buffer.
        gen = UdpLoad("127.0.0.1", target.port, sources=sources, window=128, seed=args.seed + 1)
        ops = encoded.udp("fill", private)
        stats = await gen.run(ops, count=n, limit=args.fill_limit, spin=SPIN)
        gen.close()
        return stats, "udp"
    gen = HttpLoad("127.0.0.1", target.port, "keepalive", connections=32, sources=sources)
    stats = await gen.run(
        encoded.http("fill", close=False, private=private),
        count=n,
        limit=args.fill_limit,
        spin=SPIN,
    )
    gen.close()
    return stats, "http"


def runs_in(name: str, mode: str) -> bool:
    """Whether target ``name`` is measured in ``mode``."""
    return name in WS_TARGETS if mode == "ws" else name != NODE_TARGET


def ws_workload(args: argparse.Namespace) -> WsWorkload:
    return WsWorkload.build(
        sockets=args.ws_sockets, torrents=args.ws_torrents,
        torrents_per_socket=min(args.ws_torrents_per_socket, args.ws_torrents),
        offers=args.ws_offers, seed=args.seed,
    )


async def measure_ws(
    name: str, rnd: int, workload: WsWorkload, args: argparse.Namespace
) -> Measurement:
    """Start ``name``, open the workload's sockets and fill the swarms over WebSocket, warm
    up, measure announces (with offers, answered) for ``--duration``, stop it."""
    m = Measurement(name, "ws", rnd, fill_protocol="ws")
    # Every socket comes from 127.0.0.1: lift Shoal's per-address connection cap (256),
    # which the sockets of one machine's browsers would never meet.
    settings = [f"http.max_connections_per_ip={workload.sockets + 64}", *args.shoal_set]
    target = start_target(name, workload.info_hash_bytes, shoal_settings=settings,
                          want_udp=False)
    load = WsLoad("127.0.0.1", target.port, workload)
    try:
        fill = await load.open_and_fill(limit=args.fill_limit)
        m.fill_s = round(fill.elapsed, 2)
        m.fill_errors = fill.errors + fill.timeouts + (workload.sockets - fill.connects)
        m.fill = fill.summary()
        if args.warmup > 0:
            await load.run(args.warmup, spin=SPIN)
        m.rss_before_kib = target.memory_kib()["VmRSS"]
        cpu0, gen0, wall0 = target.cpu_seconds(), own_cpu_seconds(), time.monotonic()
        stats, counts = await load.run(args.duration, record=True, spin=SPIN)
        cpu1, gen1, wall1 = target.cpu_seconds(), own_cpu_seconds(), time.monotonic()
        memory = target.memory_kib()
        m.rss_after_kib, m.peak_rss_kib = memory["VmRSS"], memory["VmHWM"]
        m.responses_per_s = round(stats.rate(), 1)
        m.tracker_cpu_s = round(cpu1 - cpu0, 2)
        m.tracker_cpu_share = round((cpu1 - cpu0) / (wall1 - wall0), 3)
        m.responses_per_cpu_s = round(stats.responses / m.tracker_cpu_s, 1) if cpu1 > cpu0 else 0
        m.peak_generator = "python"
        m.generator_cpu_share = round((gen1 - gen0) / (wall1 - wall0), 3)
        m.generator_busy_share = (
            round(stats.busy_share, 3) if stats.busy_share is not None else m.generator_cpu_share
        )
        m.p50_ms, m.p99_ms = stats.percentile_ms(0.5), stats.percentile_ms(0.99)
        m.errors, m.timeouts = stats.errors + counts.closed, stats.timeouts
        m.load = {**stats.summary(), **counts.summary(), "workload": workload.describe()}
        if not target.alive():
            m.skipped = f"tracker died: {target.log_tail()}"
    finally:
        await load.close()
        target.stop()
    return m


async def measure(
    name: str, mode: str, rnd: int, encoded: EncodedWorkload, args: argparse.Namespace
) -> Measurement:
    """Start ``name``, fill it, warm up, measure ``mode``, stop it."""
    if mode == "ws":
        return await measure_ws(name, rnd, ws_workload(args), args)
    m = Measurement(name, mode, rnd)
    private = name == PRIVATE_TARGET
    target = start_target(
        name,
        encoded.workload.info_hashes,
        shoal_settings=args.shoal_set,
        want_udp=True,
        accounts=encoded.accounts if private else None,
    )
    gen: Generator | None = None
    try:
        if mode == "udp" and not target.udp:
            m.skipped = "no UDP answer"
            return m
        fill, m.fill_protocol = await fill_target(target, encoded, args)
        m.fill_s = round(fill.elapsed, 2)
        m.fill_errors = fill.errors + fill.timeouts
        m.fill = fill.summary()
        gen = make_generator(mode, target.port, args)
        if args.warmup > 0:
            await _load(gen, encoded, mode, "mix", private, duration=args.warmup)
        m.rss_before_kib = target.memory_kib()["VmRSS"]
        profile_path = args.out / f"profile-{name}-{mode}.txt"
        profiler = None
        if args.profile and name == "shoal":
            args.out.mkdir(parents=True, exist_ok=True)
            profiler = start_profile(target.pid, args.duration, profile_path)
        store0, calls0 = target.store_cpu_seconds(), target.store_calls()
        if args.peak_generator == "c" and latgen.available() is None:
            try:
                responses = await measure_peak_c(m, target, encoded, mode, private, args)
            except (OSError, RuntimeError, ValueError) as exc:
                m.skipped = f"the C generator failed: {str(exc)[:200]}"
                return m
        else:
            responses = await measure_peak_python(m, target, gen, encoded, mode, private, args)
        store1, calls1 = target.store_cpu_seconds(), target.store_calls()
        if store0 is not None and store1 is not None:
            m.store_cpu_s = round(store1 - store0, 2)
        if calls0 is not None and calls1 is not None and responses:
            m.store_scripts_per_response = round((calls1[0] - calls0[0]) / responses, 2)
            m.store_commands_per_response = round((calls1[1] - calls0[1]) / responses, 1)
        if profiler is not None:
            profiler.wait(30)
            if profile_path.exists():
                summary = summarize_profile(profile_path)
                profile_path.with_suffix(".summary.txt").write_text(summary + "\n")
                print(f"profile of {name} {mode}: {profile_path}\n{summary}")
        memory = target.memory_kib()
        m.rss_after_kib, m.peak_rss_kib = memory["VmRSS"], memory["VmHWM"]
        if args.latency_duration > 0 and responses:
            await measure_paced(m, target, gen, encoded, mode, private, args)
        if not target.alive():
            m.skipped = f"tracker died: {target.log_tail()}"
    finally:
        if gen is not None:
            gen.close()
        target.stop()
    return m


async def measure_peak_python(
    m: Measurement,
    target: RunningTarget,
    gen: Generator,
    encoded: EncodedWorkload,
    mode: str,
    private: bool,
    args: argparse.Namespace,
) -> int:
    """The peak phase with the Python generator (as many requests in flight as it keeps);
    fills ``m``'s peak figures, returns the responses counted."""
    m.peak_generator = "python"
    others = Others(target)
    cpu0, gen0, wall0 = target.cpu_seconds(), own_cpu_seconds(), time.monotonic()
    stats = await _load(gen, encoded, mode, "mix", private, duration=args.duration, record=True)
    cpu1, gen1, wall1 = target.cpu_seconds(), own_cpu_seconds(), time.monotonic()
    m.others_cpu_share = others.share()
    m.responses_per_s = round(stats.rate(), 1)
    m.tracker_cpu_s = round(cpu1 - cpu0, 2)
    m.tracker_cpu_share = round((cpu1 - cpu0) / (wall1 - wall0), 3)
    m.responses_per_cpu_s = round(stats.responses / m.tracker_cpu_s, 1) if cpu1 > cpu0 else 0
    m.generator_cpu_share = round((gen1 - gen0) / (wall1 - wall0), 3)
    if stats.busy_share is not None:
        m.generator_busy_share = round(stats.busy_share, 3)
    else:
        m.generator_busy_share = m.generator_cpu_share
    m.p50_ms, m.p99_ms = stats.percentile_ms(0.5), stats.percentile_ms(0.99)
    m.errors, m.timeouts = stats.errors, stats.timeouts
    m.load = stats.summary()
    m.connect_share = stats.connect_share() if mode == "udp" else None
    return stats.responses


async def measure_peak_c(
    m: Measurement,
    target: RunningTarget,
    encoded: EncodedWorkload,
    mode: str,
    private: bool,
    args: argparse.Namespace,
) -> int:
    """The peak phase with the C generator in a closed loop (``--udp-window`` UDP requests
    or ``--http-connections`` HTTP requests in flight, each next one sent as soon as one is
    answered), the tracker's CPU read by the generator itself at the recorded part's two
    ends; fills ``m``'s peak figures, returns the responses counted."""
    m.peak_generator = "c"
    window = args.udp_window if mode == "udp" else args.http_connections
    others = Others(target)
    children0, wall0 = children_cpu_seconds(), time.monotonic()
    result = await latgen.run_closed(
        mode, target.port, source_addresses(args.addresses), encoded_ops(encoded, mode, private),
        window=window, duration=args.duration, warmup=PEAK_WARMUP_S,
        timeout=latgen.reply_timeout(mode), cpu_pids=process_tree(target.pid),
    )
    children1, wall1 = children_cpu_seconds(), time.monotonic()
    generator_s = children1 - children0
    m.others_cpu_share = others.share(generator_s)
    m.responses_per_s = round(result.rate(), 1)
    cpu = result.cpu_s or 0.0
    m.tracker_cpu_s = round(cpu, 2)
    m.tracker_cpu_share = round(cpu / result.elapsed, 3) if result.elapsed > 0 else None
    m.responses_per_cpu_s = round(result.responses / cpu, 1) if cpu > 0 else 0
    m.generator_cpu_share = m.generator_busy_share = round(generator_s / (wall1 - wall0), 3)
    m.p50_ms, m.p99_ms = result.service["p50_ms"], result.service["p99_ms"]
    m.errors, m.timeouts = result.errors, result.timeouts
    m.load = result.raw
    if mode == "udp":
        total = result.responses + result.connects
        m.connect_share = round(result.connects / total, 4) if total else None
    return result.responses


def children_cpu_seconds() -> float:
    """CPU seconds (user and system) of this process's waited-for children: the C
    generator's, once its run has ended."""
    times = os.times()
    return times.children_user + times.children_system


def encoded_ops(encoded: EncodedWorkload, mode: str, private: bool) -> UdpOps | HttpOps:
    """The mix's requests for ``mode``."""
    if mode == "udp":
        return encoded.udp("mix", private)
    return encoded.http("mix", close=mode == "http-close", private=private)


async def measure_paced(
    m: Measurement,
    target: RunningTarget,
    gen: Generator,
    encoded: EncodedWorkload,
    mode: str,
    private: bool,
    args: argparse.Namespace,
) -> None:
    """The paced phase at half of ``m``'s peak: with the C generator when it can be used
    (the Python one before it with ``--latency-generator both``), else the Python one."""
    # Half the peak: the peak is what the tracker's core answers per CPU-second.
    half_peak = m.responses_per_cpu_s / 2
    use_c = args.latency_generator != "python" and latgen.available() is None
    if args.latency_generator == "both" or not use_c:
        # The Python generator cannot offer more than the peak phase reached (when it ran
        # that phase; the C generator reaches more).
        rate = min(half_peak, m.responses_per_s)
        pcpu0, pwall0 = target.cpu_seconds(), time.monotonic()
        others = Others(target)
        paced = await _load(
            gen, encoded, mode, "mix", private,
            duration=args.latency_duration, record=True, rate=rate,
        )
        pcpu1, pwall1 = target.cpu_seconds(), time.monotonic()
        m.load["paced_python"] = paced.summary()
        m.paced_python_p50_ms = paced.percentile_ms(0.5)
        m.paced_python_p99_ms = paced.percentile_ms(0.99)
        if not use_c:
            m.paced_generator = "python"
            m.paced_capped = half_peak > m.responses_per_s
            m.paced_rate = round(rate, 1)
            m.paced_others_cpu_share = others.share()
            m.paced_responses_per_s = round(paced.rate(), 1)
            m.paced_tracker_cpu_share = round((pcpu1 - pcpu0) / (pwall1 - pwall0), 3)
            m.paced_p50_ms, m.paced_p99_ms = m.paced_python_p50_ms, m.paced_python_p99_ms
            m.paced_errors = paced.errors + paced.timeouts + paced.skipped
            m.load["paced"] = m.load["paced_python"]
            return
    m.paced_generator = "c"
    m.paced_rate = round(half_peak, 1)
    ops = encoded_ops(encoded, mode, private)
    pcpu0, pwall0 = target.cpu_seconds(), time.monotonic()
    others = Others(target)
    children0 = children_cpu_seconds()
    try:
        result = await latgen.run_paced(
            mode, target.port, source_addresses(args.addresses), ops,
            rate=m.paced_rate, duration=args.latency_duration, warmup=LATENCY_WARMUP_S,
            timeout=latgen.reply_timeout(mode), connections=args.http_connections,
        )
    except (OSError, RuntimeError, ValueError) as exc:
        # The run's other figures stand; the paced ones are missing, and say why.
        m.paced_errors += 1
        m.load["paced"] = {"error": str(exc)}
        return
    pcpu1, pwall1 = target.cpu_seconds(), time.monotonic()
    m.paced_others_cpu_share = others.share(children_cpu_seconds() - children0)
    m.paced_responses_per_s = round(result.rate(), 1)
    m.paced_tracker_cpu_share = round((pcpu1 - pcpu0) / (pwall1 - pwall0), 3)
    m.paced_p50_ms, m.paced_p99_ms = result.service["p50_ms"], result.service["p99_ms"]
    m.paced_p999_ms = result.service["p999_ms"]
    m.paced_schedule_p99_ms = result.schedule["p99_ms"]
    m.paced_errors = result.errors + result.timeouts + result.skipped
    m.load["paced"] = result.raw


class Others:
    """How much CPU processes other than the tracker (its Redis included) and the
    generator take on their two cores from now until :meth:`share` is called."""

    def __init__(self, target: RunningTarget) -> None:
        self.target = target
        self.cpus = [tracker_cpu(), generator_cpu()]
        self.start = self._mine()
        self.wall = time.monotonic()

    def _mine(self) -> tuple[float, float]:
        ours = self.target.cpu_seconds() + (self.target.store_cpu_seconds() or 0.0)
        return cpus_busy_seconds(self.cpus), ours + own_cpu_seconds()

    def share(self, generator_children_s: float = 0.0) -> float | None:
        """Their CPU seconds per second of wall time (None on a one-CPU machine);
        ``generator_children_s``: CPU seconds the generator's child processes (the C
        generator) used meanwhile, which are ours too."""
        if None in self.cpus:
            return None
        busy, ours = self._mine()
        ours += generator_children_s
        wall = time.monotonic() - self.wall
        if wall <= 0:
            return None
        others = (busy - self.start[0]) - (ours - self.start[1])
        return round(max(others, 0.0) / wall, 3)


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(ms: list[Measurement]) -> dict[str, Any]:
    """Medians over rounds of one (target, mode)."""
    ok = [m for m in ms if not m.skipped]
    out: dict[str, Any] = {"target": ms[0].target, "mode": ms[0].mode, "rounds": len(ok)}
    for key in (
        "responses_per_s",
        "tracker_cpu_s",
        "tracker_cpu_share",
        "responses_per_cpu_s",
        "generator_cpu_share",
        "generator_busy_share",
        "p50_ms",
        "p99_ms",
        "peak_rss_kib",
        "rss_before_kib",
        "rss_after_kib",
        "paced_rate",
        "paced_responses_per_s",
        "paced_tracker_cpu_share",
        "paced_p50_ms",
        "paced_p99_ms",
        "paced_p999_ms",
        "paced_schedule_p99_ms",
        "paced_python_p50_ms",
        "paced_python_p99_ms",
        "connect_share",
        "others_cpu_share",
        "paced_others_cpu_share",
        "fill_s",
        "store_cpu_s",
        "store_scripts_per_response",
        "store_commands_per_response",
    ):
        out[key] = median([getattr(m, key) for m in ok])
    out["errors"] = sum(m.errors for m in ok)
    out["timeouts"] = sum(m.timeouts for m in ok)
    out["fill_errors"] = sum(m.fill_errors for m in ok)
    out["paced_errors"] = sum(m.paced_errors for m in ok)
    out["paced_capped"] = any(m.paced_capped for m in ok)
    out["peak_generator"] = ",".join(sorted({m.peak_generator for m in ok if m.peak_generator}))
    out["paced_generator"] = ",".join(sorted({m.paced_generator for m in ok if m.paced_generator}))
    out["skipped"] = sorted({m.skipped for m in ms if m.skipped})
    return out


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    """The per-target, per-mode table of medians."""
    lines = [
        "| target | mode | responses/s | tracker CPU s | tracker CPU share "
        "| responses per tracker CPU-s | generator | p50 ms | p99 ms | p99 ms at half peak "
        "| errors | timeouts | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        if not s["rounds"]:
            lines.append(f"| {s['target']} | {s['mode']} | skipped: {'; '.join(s['skipped'])} |")
            continue
        share, busy = s["tracker_cpu_share"], s["generator_busy_share"]
        generator = s.get("peak_generator") or "python"
        if generator == "python" and busy is not None:
            generator += f", {busy * 100:.0f}% busy"
        rss = s["peak_rss_kib"]
        lines.append(
            f"| {s['target']} | {s['mode']} | {_fmt(s['responses_per_s'])} "
            f"| {_fmt(s['tracker_cpu_s'], 2)} "
            f"| {_fmt(share * 100 if share is not None else None)}% "
            f"| **{_fmt(s['responses_per_cpu_s'])}** | {generator} "
            f"| {_fmt(s['p50_ms'], 2)} | {_fmt(s['p99_ms'], 2)} | {_fmt(s['paced_p99_ms'], 2)} "
            f"| {s['errors']} | {s['timeouts']} "
            f"| {_fmt(rss / 1024 if rss is not None else None, 1)} |"
        )
    return "\n".join(lines)


def _side_by_side(
    summaries: list[dict[str, Any]], first: str, second: str, head: list[str],
    row: Callable[[str, dict[str, Any], dict[str, Any], float | None], str],
) -> str:
    """A table of ``head`` and one ``row(mode, first's summary, second's, second / first
    in responses per tracker CPU-second)`` per mode both targets ran ("" when none)."""
    by_key = {(s["target"], s["mode"]): s for s in summaries}
    lines = list(head)
    for mode in MODES:
        a_run, b_run = by_key.get((first, mode)), by_key.get((second, mode))
        if not a_run or not b_run:
            continue
        a, b = a_run["responses_per_cpu_s"], b_run["responses_per_cpu_s"]
        lines.append(row(mode, a_run, b_run, b / a if a and b else None))
    return "\n".join(lines) if len(lines) > 2 else ""


def ratio_table(summaries: list[dict[str, Any]]) -> str:
    """Shoal / opentracker in responses per tracker CPU-second, per mode."""

    def row(mode: str, ot: dict[str, Any], shoal: dict[str, Any], ratio: float | None) -> str:
        goal = TARGET_RATIOS[mode]
        verdict = "-" if ratio is None else ("met" if ratio >= goal else "not met")
        return (f"| {mode} | {_fmt(shoal['responses_per_cpu_s'])} "
                f"| {_fmt(ot['responses_per_cpu_s'])} | {_fmt(ratio, 2)}x "
                f"| >= {goal}x ({verdict}) |")

    return _side_by_side(summaries, "opentracker", "shoal", [
        "| mode | Shoal resp/CPU-s | opentracker resp/CPU-s | Shoal / opentracker | goal |",
        "|---|---:|---:|---:|---:|",
    ], row)


def base_table(summaries: list[dict[str, Any]]) -> str:
    """Shoal against the baseline Shoal (``shoal-base``), per mode, when both ran."""
    return _side_by_side(summaries, "shoal-base", "shoal", [
        "| mode | Shoal resp/CPU-s | baseline resp/CPU-s | Shoal / baseline |",
        "|---|---:|---:|---:|",
    ], lambda mode, old, new, ratio: (
        f"| {mode} | {_fmt(new['responses_per_cpu_s'])} | {_fmt(old['responses_per_cpu_s'])} "
        f"| {_fmt(ratio, 2)}x |"))


def redis_table(summaries: list[dict[str, Any]]) -> str:
    """Shoal on the Redis store against Shoal in memory, per mode, when both ran."""
    return _side_by_side(summaries, "shoal", REDIS_TARGET, [
        "| mode | memory resp/s | Redis resp/s | memory resp/tracker CPU-s "
        "| Redis resp/tracker CPU-s | Redis / memory (per CPU-s) | redis-server CPU s "
        "| scripts per response | Redis commands per response (scripts' own included) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ], lambda mode, mem, red, ratio: (
        f"| {mode} | {_fmt(mem['responses_per_s'])} | {_fmt(red['responses_per_s'])} "
        f"| {_fmt(mem['responses_per_cpu_s'])} | {_fmt(red['responses_per_cpu_s'])} "
        f"| {_fmt(ratio, 2)}x | {_fmt(red['store_cpu_s'], 2)} "
        f"| {_fmt(red['store_scripts_per_response'], 2)} "
        f"| {_fmt(red['store_commands_per_response'], 1)} |"))


def private_table(summaries: list[dict[str, Any]]) -> str:
    """Shoal in private mode against Shoal in public mode, per mode, when both ran."""
    return _side_by_side(summaries, "shoal", PRIVATE_TARGET, [
        "| mode | public resp/s | private resp/s | public resp/tracker CPU-s "
        "| private resp/tracker CPU-s | private / public (per CPU-s) "
        "| public p99 ms | private p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ], lambda mode, pub, priv, ratio: (
        f"| {mode} | {_fmt(pub['responses_per_s'])} | {_fmt(priv['responses_per_s'])} "
        f"| {_fmt(pub['responses_per_cpu_s'])} | {_fmt(priv['responses_per_cpu_s'])} "
        f"| {_fmt(ratio, 2)}x | {_fmt(pub['p99_ms'], 2)} | {_fmt(priv['p99_ms'], 2)} |"))


def ws_table(summaries: list[dict[str, Any]]) -> str:
    """Shoal against the reference WebTorrent tracker in the ws mode, when both ran."""
    return _side_by_side(summaries, NODE_TARGET, "shoal", [
        "| mode | Shoal announces/s | bittorrent-tracker announces/s "
        "| Shoal announces per tracker CPU-s | bittorrent-tracker announces per tracker CPU-s "
        "| Shoal / bittorrent-tracker | Shoal p99 ms | bittorrent-tracker p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ], lambda mode, node, shoal, ratio: (
        f"| {mode} | {_fmt(shoal['responses_per_s'])} | {_fmt(node['responses_per_s'])} "
        f"| {_fmt(shoal['responses_per_cpu_s'])} | {_fmt(node['responses_per_cpu_s'])} "
        f"| {_fmt(ratio, 2)}x | {_fmt(shoal['p99_ms'], 2)} | {_fmt(node['p99_ms'], 2)} |"))


def latency_table(summaries: list[dict[str, Any]]) -> str:
    """Latency at half of the peak, per target and mode (the paced phase), with the goal."""
    both = any(s.get("paced_python_p99_ms") is not None and s.get("paced_generator") == "c"
               for s in summaries)
    extra_head = " | Python generator p50 ms | Python generator p99 ms" if both else ""
    lines = [
        "| target | mode | peak resp per CPU-s | offered req/s | answered resp/s "
        "| tracker CPU share | other processes' CPU | generator | p50 ms | p99 ms | p99.9 ms "
        f"| p99 ms from schedule{extra_head} | p99 under {LATENCY_GOAL_MS:g} ms |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
        + ("---:|---:|" if both else "") + "---:|",
    ]
    for s in summaries:
        if s["mode"] == "ws" or not s["rounds"] or not s["paced_rate"]:
            continue
        p99, share = s["paced_p99_ms"], s["paced_tracker_cpu_share"]
        others = s["paced_others_cpu_share"]
        verdict = "-" if p99 is None else ("yes" if p99 < LATENCY_GOAL_MS else "no")
        capped = " (generator's most)" if s["paced_capped"] else ""
        extra = (f" | {_fmt(s['paced_python_p50_ms'], 2)} | {_fmt(s['paced_python_p99_ms'], 2)}"
                 if both else "")
        lines.append(
            f"| {s['target']} | {s['mode']} | {_fmt(s['responses_per_cpu_s'])} "
            f"| {_fmt(s['paced_rate'])}{capped} | {_fmt(s['paced_responses_per_s'])} "
            f"| {_fmt(share * 100 if share is not None else None)}% "
            f"| {_fmt(others * 100 if others is not None else None)}% "
            f"| {s.get('paced_generator') or '-'} "
            f"| {_fmt(s['paced_p50_ms'], 2)} | {_fmt(p99, 2)} | {_fmt(s['paced_p999_ms'], 2)} "
            f"| {_fmt(s['paced_schedule_p99_ms'], 2)}{extra} | {verdict} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


LATENCY_NOTE = (
    "Latency at half of the peak: after each measured run, the same tracker is offered "
    "half its peak (the responses per tracker CPU-second just measured: what its one core "
    "answers when busy all the time) for --latency-duration seconds, open loop. Generator "
    "'c' (bench/latgen.c, the default): one request every 1/rate seconds on an even "
    f"schedule, after {LATENCY_WARMUP_S:g} s on the same schedule that are not recorded "
    "(it opens its own connections); p50, p99 and p99.9 run from the moment just before "
    "the request's send system call to the kernel's receive timestamp of its reply "
    "(SO_TIMESTAMPNS for UDP, "
    "SO_TIMESTAMPING for TCP), so a reply waiting in the generator's socket buffer while "
    "it is busy is not billed to the tracker; 'from schedule' runs from when the request "
    "was due (the open loop's honest figure: the generator's own lateness and, for HTTP, "
    "waiting for one of the --http-connections connections are in it). Generator 'python' "
    "(no C compiler, or --latency-generator python): requests go out on a 1 ms timer, "
    "latency from the send to the reply's handling in Python; its figures include the "
    "Python generator's own delays. 'Other processes' CPU' is what processes other than "
    "the tracker and the generator took on their two cores meanwhile, in share of one core: "
    "on a shared machine it shows when someone else's work was in the way (a generator or "
    "tracker descheduled for a few milliseconds shows up in the p99 whatever the tracker "
    f"does). Issue 11's goal: p99 under {LATENCY_GOAL_MS:g} ms."
)


def workload_note(workload: Workload, summaries: list[dict[str, Any]]) -> str:
    """What the peers look like to a tracker, and the UDP connect share each target saw."""
    d = workload.describe()
    n = workload.config.addresses
    shares = ", ".join(
        f"{s['target']} {s['connect_share'] * 100:.1f}%"
        for s in summaries
        if s["mode"] == "udp" and s.get("connect_share") is not None
    )
    return (
        f"Peers: {n:,} source addresses ({address_for(0)} to {address_for(n - 1)}, each "
        f"socket bound to its peer's address), {float(d['seeder_share']) * 100:.1f}% of "
        f"pairs seeders, {float(d['udp_connect_marks']) * 100:.1f}% of UDP operations "
        "preceded by a fresh connect"
        + (f"; connects among the UDP replies measured: {shares}." if shares else ".")
    )


def ws_note(workload: WsWorkload) -> str:
    return (
        f"WebTorrent over WebSocket (ws mode): {workload.describe()}; every socket keeps one "
        "announce in flight, every relayed offer is answered at once, so each announce also "
        "costs the tracker its offer and answer relays. Shoal against npm's bittorrent-tracker "
        "server (js/bench-tracker.mjs, its defaults). No paced phase in this mode."
    )


PRIVATE_NOTE = (
    "Shoal in private mode (shoal-private) against Shoal in public mode (shoal): one user "
    "per peer, every torrent registered, passkeys in the paths (HTTP) and in BEP 41 URL "
    "data (UDP), accounting flushed to SQLite in the work directory every 5 s. Its UDP mix "
    "has no scrapes (a UDP scrape cannot carry a passkey, so private mode refuses it): "
    "announces only, against the public mix with its 10% scrapes."
)


def _others_note(m: Measurement) -> str:
    """Other processes' CPU on our two cores, measured run / paced phase."""
    if m.others_cpu_share is None:
        return ""
    paced = m.paced_others_cpu_share
    return (f"others' cpu {m.others_cpu_share * 100:.0f}%"
            f"/{_fmt(paced * 100 if paced is not None else None)}%  ")


def progress_line(m: Measurement, rounds: int) -> str:
    """One line per run, printed as the runs go."""
    head = f"round {m.round + 1}/{rounds} {m.target:13} {m.mode:14} "
    busy = m.generator_busy_share * 100 if m.generator_busy_share is not None else None
    share = m.tracker_cpu_share * 100 if m.tracker_cpu_share is not None else None
    generator = f"gen {m.peak_generator or '-'}" + (
        f" busy {_fmt(busy, 0)}%" if m.peak_generator == "python" else "")
    if m.skipped:
        return head + f"skipped ({m.skipped})"
    return head + (
        f"{m.responses_per_s:>9,.0f} resp/s  cpu {m.tracker_cpu_s:5.2f} s ({_fmt(share, 0)}%)  "
        f"{m.responses_per_cpu_s:>9,.0f} resp/cpu-s  {generator}  "
        f"p99 {_fmt(m.p99_ms, 2)} ms (at half peak: p50 {_fmt(m.paced_p50_ms, 2)} "
        f"p99 {_fmt(m.paced_p99_ms, 2)} ms, {m.paced_generator or '-'}"
        + (f", from schedule {_fmt(m.paced_schedule_p99_ms, 2)}"
           if m.paced_schedule_p99_ms is not None else "")
        + (f"; python generator p99 {_fmt(m.paced_python_p99_ms, 2)}"
           if m.paced_python_p99_ms is not None and m.paced_generator == "c" else "")
        + ")  "
        + (f"connects {m.connect_share * 100:.1f}%  " if m.connect_share is not None else "")
        + _others_note(m)
        + f"errors {m.errors}+{m.timeouts} timeouts  fill {m.fill_s} s by {m.fill_protocol}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Shoal against opentracker, side by side (see bench/runner.py). "
        "`python -m bench scaling --help` for the scaling series.",
    )
    p.add_argument("--targets", default=",".join(TARGET_NAMES),
                   help="comma-separated; shoal-python: Shoal with tracker.engine=python; "
                        "shoal-native: Shoal with tracker.engine=native; "
                        "shoal-base: Shoal from $BENCH_SHOAL_BASE; "
                   f"{REDIS_TARGET}: Shoal on a redis-server of its own; "
                   f"{PRIVATE_TARGET}: Shoal in private mode (passkeys, accounting)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ",".join(MODES))
    p.add_argument("--duration", type=float, help="measured seconds per run (12; quick 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (4; quick 0.5)")
    p.add_argument(
        "--latency-duration",
        type=float,
        help="seconds paced at half the measured rate, for latency; 0 skips (4; quick 1)",
    )
    p.add_argument(
        "--latency-generator", choices=("c", "python", "both"), default="c",
        help="the paced phase's generator: c (bench/latgen.c, built with the system cc; "
        "Python when it cannot be built), python, or both (Python first, then C; the table "
        "shows both) (c)",
    )
    p.add_argument(
        "--peak-generator", choices=("c", "python"), default="c",
        help="the peak phase's generator: c (bench/latgen.c in a closed loop, so the "
        "tracker, not the generator, is the limit; Python when it cannot be built) or "
        "python (the asyncio generators, which one core of Python caps) (c)",
    )
    p.add_argument("--rounds", type=int, help="rounds, targets interleaved (3; quick 1)")
    p.add_argument("--torrents", type=int, help="torrents in the mix (10,000; quick 200)")
    p.add_argument("--peers", type=int, help="distinct peers (100,000; quick 2,000)")
    p.add_argument("--mix-length", type=int, help="mix operations replayed (100,000; quick 5,000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    p.add_argument("--ws-sockets", type=int,
                   help="WebSockets (peers) in the ws mode (400; quick 20)")
    p.add_argument("--ws-torrents", type=int, help="swarms in the ws mode (100; quick 5)")
    p.add_argument("--ws-torrents-per-socket", type=int, default=4,
                   help="swarms each WebSocket joins")
    p.add_argument("--ws-offers", type=int, default=5,
                   help="WebRTC offers per announce (the reference client sends 5)")
    p.add_argument("--addresses", type=int,
                   help=f"loopback source addresses the peers come from, one UDP socket each "
                   f"(127.0.1.1 on; {DEFAULT_ADDRESSES}; quick 16)")
    p.add_argument("--udp-connect-share", type=float, default=0.05,
                   help="share of UDP operations preceded by a fresh connect (0.05)")
    p.add_argument("--udp-window", type=int, default=128,
                   help="UDP requests in flight, over all source addresses (128)")
    p.add_argument("--http-connections", type=int, default=64)
    p.add_argument("--fill-limit", type=float, default=300.0, help="most seconds for a fill")
    p.add_argument(
        "--shoal-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra Shoal setting (repeatable)",
    )
    p.add_argument(
        "--no-spin",
        action="store_true",
        help="let the generator's loop sleep between replies (then the tracker pays for "
        "waking it on every reply: see bench/spin.py)",
    )
    p.add_argument("--no-save", action="store_true", help="print only; write no results")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the tracker with py-spy while measuring (Python targets; implies "
        "--no-save, as sampling disturbs the figures); profiles go to --out",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny fast run (checks the harness, not speed)"
    )
    args = p.parse_args(argv)
    if args.profile:
        if py_spy() is None:
            p.error(PY_SPY_HINT)
        args.no_save = True
    for key, value in (QUICK_DEFAULTS if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.targets = [t for t in args.targets.split(",") if t]
    args.modes = [m for m in args.modes.split(",") if m]
    for t in args.targets:
        if t not in (*TARGET_NAMES, "shoal-base", REDIS_TARGET, PRIVATE_TARGET, NODE_TARGET,
                     PYTHON_TARGET, NATIVE_TARGET):
            p.error(f"unknown target {t!r}")
    for m in args.modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}")
    if not 1 <= args.addresses <= 25_000:
        p.error("--addresses must be 1 to 25,000")
    if not 0.0 <= args.udp_connect_share <= 1.0:
        p.error("--udp-connect-share must be between 0 and 1")
    return args


def main(argv: Sequence[str] | None = None, *, log: Callable[[str], None] = print) -> int:
    global SPIN
    args = parse_args(argv)
    SPIN = not args.no_spin
    pin_generator()
    targets = list(args.targets)
    if "opentracker" in targets and not opentracker_available():
        log("opentracker is not installed (bash scripts/install-bench-deps.sh): Shoal only")
        targets.remove("opentracker")
    if NODE_TARGET in targets and "ws" in args.modes and not node_tracker_available():
        log("Node.js or npm's bittorrent-tracker is missing (bash scripts/install-bench-deps.sh): "
            "the ws mode runs Shoal only")
    if NODE_TARGET in targets and (
        "ws" not in args.modes or not node_tracker_available()
    ):
        targets.remove(NODE_TARGET)
    if not targets:
        log("no target to run")
        return 2
    config = WorkloadConfig(
        torrents=args.torrents, peers=args.peers, seed=args.seed, mix_length=args.mix_length,
        addresses=args.addresses, connect_fraction=args.udp_connect_share,
    )
    t0 = time.monotonic()
    tcp_udp = any(mode != "ws" for mode in args.modes)
    # The ws mode has a workload of its own (bench/ws_load.py): a run of that mode alone
    # builds an empty HTTP/UDP one.
    workload = Workload.build(config if tcp_udp else WorkloadConfig(
        torrents=1, peers=1, seed=args.seed, mix_length=1))
    if tcp_udp:
        log(f"workload: {workload.describe()} (built in {time.monotonic() - t0:.1f} s)")
    if "ws" in args.modes:
        log(f"ws workload: {ws_workload(args).describe()}")
    log(f"tracker on CPU {tracker_cpu()}, generator on CPU {generator_cpu()}, {event_loop_name()}")
    if args.latency_duration > 0 and args.latency_generator != "python":
        why_not = latgen.available()
        if why_not is not None:
            log(f"latency: the C generator cannot be used ({why_not}): the Python one paces")
    encoded = EncodedWorkload(workload)
    results: dict[tuple[str, str], list[Measurement]] = {}
    for rnd in range(args.rounds):
        order = targets if rnd % 2 == 0 else targets[::-1]
        for mode in args.modes:
            for name in order:
                if not runs_in(name, mode):
                    continue
                try:
                    m = run_async(measure(name, mode, rnd, encoded, args))
                except TargetError as exc:
                    m = Measurement(name, mode, rnd, skipped=str(exc).splitlines()[0])
                    log(f"  {name}: {exc}")
                results.setdefault((name, mode), []).append(m)
                log(progress_line(m, args.rounds))
    summaries = [
        summarize(results[(name, mode)])
        for mode in args.modes
        for name in targets
        if (name, mode) in results
    ]
    machine = machine_info()
    table = markdown_table(summaries)
    ratios = ratio_table(summaries)
    mix = (
        f"; {args.torrents:,} torrents, {args.peers:,} peers "
        f"({len(workload.fill):,} peer-torrent pairs)" if tcp_udp else ""
    )
    header = (
        f"Medians of {args.rounds} round(s); {args.duration:g} s measured after {args.warmup:g} s "
        f"warm-up{mix}, seed {args.seed}.\n"
        f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, Python {machine['python']}, "
        f"{machine['event_loop']}, opentracker {machine['opentracker'] or '-'}, "
        f"bittorrent-tracker {machine['bittorrent_tracker'] or '-'}, "
        f"Shoal {machine['shoal_commit'] or '-'}, {machine['date']}.\n"
        f"Command: `{machine['command']}`\n"
        + (
            "Peak phase in a closed loop. Generator 'c' (bench/latgen.c, the default): it "
            "never sleeps, and reads the tracker's CPU time itself at the two ends of the "
            "recorded part. Generator 'python' (--peak-generator python, no C compiler, and "
            "the ws mode): it busy-polls (bench/spin.py), so no tracker pays for waking it, "
            "and 'busy' is its estimated share of time on real work (near 100%: the "
            "generator, not the tracker, set the pace). 'Tracker CPU share' is of one core: "
            "near 100%, the tracker set the pace."
            if SPIN
            else "The generator sleeps when idle (--no-spin): trackers pay for waking it."
        )
    )
    report = f"{header}\n"
    if tcp_udp:
        report += f"{workload_note(workload, summaries)}\n"
    report += f"\n{table}\n"
    if ratios:
        report += f"\n{ratios}\n"
    latency = latency_table(summaries)
    if latency:
        report += f"\n{LATENCY_NOTE}\n\n{latency}\n"
    against_memory = redis_table(summaries)
    if against_memory:
        report += f"\nShoal on the Redis store against Shoal in memory.\n\n{against_memory}\n"
    against_public = private_table(summaries)
    if against_public:
        report += f"\n{PRIVATE_NOTE}\n\n{against_public}\n"
    against_node = ws_table(summaries)
    if against_node:
        report += f"\n{ws_note(ws_workload(args))}\n\n{against_node}\n"
    elif "ws" in args.modes and any(s["mode"] == "ws" for s in summaries):
        report += f"\n{ws_note(ws_workload(args))}\n"
    against_base = base_table(summaries)
    if against_base:
        report += f"\nBaseline: Shoal from ${BASE_ENV}.\n\n{against_base}\n"
    log("")
    log(report)
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.md").write_text(report)
        with open(args.out / "results.jsonl", "a") as f:
            for s in summaries:
                raw = [asdict(m) for m in results[(s["target"], s["mode"])]]
                record = {
                    "kind": "comparison",
                    **s,
                    "runs": raw,
                    "workload": (
                        ws_workload(args).describe() if s["mode"] == "ws" else workload.describe()
                    ),
                    "settings": {
                        k: v for k, v in vars(args).items() if k not in ("out", "targets", "modes")
                    },
                    "machine": machine,
                }
                f.write(json.dumps(record, default=str) + "\n")
        log(f"written: {args.out / 'latest.md'}, appended to {args.out / 'results.jsonl'}")
    failed = any(s["errors"] for s in summaries)
    return 1 if failed else 0
