"""Where a tracker's slow replies at a fixed rate come from: ``python -m bench tail``.

Starts one target (as the comparison does: pinned to CPU 1, filled with the workload),
offers it ``--rate`` requests a second with the C generator (:mod:`bench.latgen`) for
``--duration`` seconds while ``perf`` records every context switch on the tracker's CPU,
then groups the replies slower than ``--threshold`` ms into episodes (overlapping
send-to-reply intervals) and says, for each, what the tracker's CPU ran meanwhile: the
tracker itself (its own work: a long hold, or catching up on a backlog), ``swapper`` (the
CPU was idle: the requests had not reached the tracker yet, or its wake-up was late, which
on a virtual machine is the hypervisor's), or other processes. The totals say which of
these the slow replies' time went to. Needs ``perf`` (Debian's linux-perf) and the right to
trace scheduler events (root, or ``kernel.perf_event_paranoid`` at most 1).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import latgen
from bench.runner import EncodedWorkload, fill_target, pin_generator, run_async
from bench.targets import process_tree, start_target, tracker_cpu
from bench.workload import DEFAULT_ADDRESSES, Workload, WorkloadConfig, source_addresses

_SWITCH = re.compile(
    r"\s(\d+\.\d+):\s+sched:sched_switch:.*?next_comm=(.*?) next_pid=(\d+)"
)


@dataclass(frozen=True, slots=True)
class Switch:
    at_ns: int  # CLOCK_REALTIME
    task: str  # "comm/pid" now running


@dataclass(slots=True)
class Episode:
    start_ns: int
    end_ns: int
    replies: int
    ran: Counter[str]


def read_trace(path: Path) -> tuple[array[int], array[int]]:
    """The C generator's trace (LATGEN_TRACE): arrival times and latencies, in ns."""
    data: array[int] = array("q")
    data.frombytes(path.read_bytes())
    return data[0::2], data[1::2]


def parse_switches(text: str, offset_ns: int) -> list[Switch]:
    """``perf script`` lines of sched_switch events (CLOCK_MONOTONIC seconds), as realtime
    switches (``offset_ns``: realtime minus monotonic)."""
    out = []
    for line in text.splitlines():
        m = _SWITCH.search(line)
        if m:
            at = round(float(m.group(1)) * 1e9) + offset_ns
            out.append(Switch(at, f"{m.group(2)}/{m.group(3)}"))
    return out


def episodes(arrivals: Sequence[int], latencies: Sequence[int], threshold_ns: int,
             switches: list[Switch]) -> list[Episode]:
    """Replies slower than ``threshold_ns`` merged into episodes of overlapping
    send-to-reply intervals, each with the time every task ran on the tracker's CPU."""
    spans: list[list[int]] = []
    for at, latency in sorted(zip(arrivals, latencies, strict=True)):
        if latency <= threshold_ns:
            continue
        start = at - latency
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], at)
            spans[-1][2] += 1
        else:
            spans.append([start, at, 1])
    times = [s.at_ns for s in switches]
    out = []
    for start, end, n in spans:
        ran: Counter[str] = Counter()
        i = bisect.bisect_right(times, start) - 1
        if i >= 0:
            current, last = switches[i].task, start
            j = i + 1
            while j < len(switches) and switches[j].at_ns < end:
                ran[current] += switches[j].at_ns - last
                current, last = switches[j].task, switches[j].at_ns
                j += 1
            ran[current] += end - last
        out.append(Episode(start, end, n, ran))
    return out


def thread_ids(pid: int) -> set[str]:
    """Every thread of ``pid``'s process tree (a context switch names a thread)."""
    out = set()
    for p in process_tree(pid):
        try:
            out.update(os.listdir(f"/proc/{p}/task"))
        except OSError:
            out.add(str(p))
    return out


def kind_of(task: str, tracker_pids: set[str]) -> str:
    name, _, pid = task.rpartition("/")
    if pid in tracker_pids:
        return "the tracker"
    if name.startswith("swapper"):
        return "idle (swapper)"
    return "other processes"


def report(eps: list[Episode], tracker_pids: set[str], replies: int, threshold_ms: float,
           limit: int = 30) -> str:
    lines = [f"{replies:,} replies; {sum(e.replies for e in eps):,} slower than "
             f"{threshold_ms:g} ms, in {len(eps)} episodes"]
    totals: Counter[str] = Counter()
    for e in eps:
        for task, ns in e.ran.items():
            totals[kind_of(task, tracker_pids)] += ns
    whole = sum(totals.values()) or 1
    if eps:
        lines.append("time the tracker's CPU spent during them: " + ", ".join(
            f"{k} {v / whole * 100:.0f}%" for k, v in totals.most_common()))
    base = eps[0].start_ns if eps else 0
    for e in sorted(eps, key=lambda e: e.end_ns - e.start_ns, reverse=True)[:limit]:
        ran = ", ".join(f"{task} {ns / 1e6:.2f}" for task, ns in e.ran.most_common(3))
        lines.append(f"  at {(e.start_ns - base) / 1e6:9.1f} ms, "
                     f"{(e.end_ns - e.start_ns) / 1e6:6.2f} ms, {e.replies} replies: "
                     f"{ran or 'no switch recorded'}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench tail", description=__doc__)
    p.add_argument("--target", default="shoal")
    p.add_argument("--mode", default="udp", choices=latgen.MODES)
    p.add_argument("--rate", type=float, required=True, help="requests a second")
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--threshold", type=float, default=1.0, help="ms (1)")
    p.add_argument("--torrents", type=int, default=10_000)
    p.add_argument("--peers", type=int, default=100_000)
    p.add_argument("--addresses", type=int, default=DEFAULT_ADDRESSES)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> str:
    cpu = tracker_cpu()
    perf = shutil.which("perf")
    if perf is None or cpu is None:
        raise SystemExit("needs perf (apt-get install linux-perf) and two CPUs")
    why_not = latgen.available()
    if why_not is not None:
        raise SystemExit(f"needs the C generator: {why_not}")
    workload = Workload.build(WorkloadConfig(
        torrents=args.torrents, peers=args.peers, seed=args.seed, addresses=args.addresses))
    encoded = EncodedWorkload(workload)
    target = start_target(args.target, workload.info_hashes, want_udp=True)
    fill_args = argparse.Namespace(addresses=args.addresses, seed=args.seed, fill_limit=300.0)
    with tempfile.TemporaryDirectory(prefix="shoal-tail-") as tmp:
        trace, record = Path(tmp) / "trace.bin", Path(tmp) / "perf.data"
        try:
            await fill_target(target, encoded, fill_args)
            ops = encoded.udp("mix") if args.mode == "udp" else encoded.http(
                "mix", close=args.mode == "http-close")
            warmup = 0.5
            recorder = subprocess.Popen(
                [perf, "record", "-q", "-e", "sched:sched_switch", "-C", str(cpu), "-k", "mono",
                 "-o", str(record), "--", "sleep", str(warmup + args.duration + 1)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(0.5)  # perf's own start-up, before the schedule starts
            os.environ["LATGEN_TRACE"] = str(trace)
            try:
                result = await latgen.run_paced(
                    args.mode, target.port, source_addresses(args.addresses), ops,
                    rate=args.rate, warmup=warmup, duration=args.duration)
            finally:
                del os.environ["LATGEN_TRACE"]
            recorder.wait(timeout=60)
            tracker_pids = thread_ids(target.pid)
        finally:
            target.stop()
        offset = time.time_ns() - time.monotonic_ns()
        script = subprocess.run([perf, "script", "-i", str(record)], capture_output=True,
                                text=True, timeout=300, check=False).stdout
        arrivals, latencies = read_trace(trace)
    switches = parse_switches(script, offset)
    eps = episodes(arrivals, latencies, int(args.threshold * 1e6), switches)
    head = (f"{args.target} {args.mode} at {args.rate:,.0f} requests/s for "
            f"{args.duration:g} s: p50 {result.service['p50_ms']} ms, p99 "
            f"{result.service['p99_ms']} ms, p99.9 {result.service['p999_ms']} ms "
            f"(from the schedule: p99 {result.schedule['p99_ms']} ms); "
            f"{len(switches):,} context switches on CPU {cpu}")
    return head + "\n" + report(eps, tracker_pids, len(latencies), args.threshold)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pin_generator()
    print(run_async(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
