"""How cost grows: ``python -m bench scaling [options]``.

Series, each for Shoal with its compiled data plane (``shoal-native``: ``tracker.engine =
native``, which will not start without it), Shoal on its pure-Python engine
(``shoal-python``) and opentracker (fills and loads go by UDP when the tracker has it,
HTTP keep-alive otherwise). The peers are the comparison's (:mod:`bench.workload`): from
``--addresses`` loopback source addresses (256; each socket bound to its peer's address,
peer ``p`` from address ``p % 256`` and port ``1024 + p // 256``, so no two share an
address and port), a tenth of them seeders, every one reporting non-zero uploaded and
downloaded totals as real clients do (Shoal's compiled table keeps 16 more bytes a peer
once any peer of a torrent reports some).

* ``swarm``: announce cost against swarm size. One torrent is filled to 1, 10, 100,
  1,000, 10,000 and 100,000 peers; at each size regular announces (numwant 50) from the
  swarm's own peers (drawn at random, four draws a peer, 100,000 at most) are measured
  for ``--point-duration`` seconds after a short warm-up, as responses per tracker
  CPU-second. The load comes from the C generator (:mod:`bench.latgen`) in a closed
  loop, ``--udp-window`` UDP requests (or ``--http-connections`` HTTP requests) in
  flight, each next one sent as soon as one is answered, so the tracker, not the
  generator, sets the pace, and its CPU share (read by the generator at the measured
  part's two ends) shows how near saturation each point is. ``--generator python`` (or
  no C compiler) uses the asyncio generators instead, which one core of Python caps near
  40,000 replies a second: a compiled tracker then sits half idle and per-wake-up costs
  blur the figure. The curve must stay flat: answering picks at most numwant peers,
  whatever the swarm holds; the report gives the cost of an announce at 100,000 peers
  over its cost at 1 (and at 10: a one-peer swarm has nobody to hand out). The swarm
  size the tracker reports (by scrape) is recorded too.
* ``memory``: resident memory against peers. Peers are added, ten per torrent, up to
  100,000 torrents and 1,000,000 peers; at 1,000, 10,000, 100,000, 300,000 and 1,000,000
  the tracker's RSS minus its RSS before the first announce gives bytes per peer (the
  torrents' own cost included, ten peers sharing each); the report sums up the figure at
  1,000,000 peers per target.
* ``steady``: after the memory fill, regular announces of the filled peers for
  ``--steady-seconds`` (RSS sampled every few seconds): the swarm does not grow, so
  neither should memory.
* ``sweep`` (Shoal only: opentracker's peer timeout and cleaning are compiled in): Shoal
  runs with a short ``tracker.peer_timeout`` and a 1-second ``tracker.sweep_interval``.
  Its idle CPU is measured empty (the baseline), then with ``--sweep-peers`` silent but
  live peers (ten per torrent: every pass examines them all and removes none), then while
  those peers time out and the sweep removes them. Reported: CPU microseconds per peer
  examined in a pass, per peer removed, and what a full pass costs at the default
  60-second sweep interval.

``--max-peers`` bounds both series. A markdown table goes to ``<out>/scaling.md``, a PNG
per series next to it (when matplotlib is installed), and JSON lines to
``<out>/results.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import latgen
from bench.http_load import HttpLoad, HttpOps, encode_http_ops
from bench.runner import DEFAULT_OUT, machine_info, pin_generator, run_async
from bench.stats import LoadStats
from bench.targets import (
    NATIVE_TARGET,
    PYTHON_TARGET,
    RunningTarget,
    TargetError,
    opentracker_available,
    process_tree,
    scrape_counts,
    start_target,
)
from bench.udp_load import ACTION_ANNOUNCE, UdpLoad, UdpOps
from bench.workload import (
    DEFAULT_ADDRESSES,
    Announce,
    Event,
    info_hash_for,
    key_for,
    peer_id_for,
    port_for,
    source_addresses,
    source_for,
)

SWARM_SIZES = (1, 10, 100, 1_000, 10_000, 100_000)
MEMORY_POINTS = (1_000, 10_000, 100_000, 300_000, 1_000_000)
PEERS_PER_TORRENT = 10
MAX_TORRENTS = 100_000
CHUNK = 50_000
_BODY = struct.Struct("!20s20sQQQIIIiH")
_TORRENT_SIZE = 700_000_000
SEEDER_EVERY = 10  # one peer in ten seeds
SWARM_DRAWS = 100_000  # announces drawn per swarm size, at most
DEFAULT_TARGETS = (NATIVE_TARGET, PYTHON_TARGET, "opentracker")
SHOAL_TARGETS = ("shoal", NATIVE_TARGET, PYTHON_TARGET)


def _left(peer: int) -> int:
    """Bytes peer ``peer`` has left: none for a seeder, some of the torrent otherwise."""
    if peer % SEEDER_EVERY == 0:
        return 0
    return _TORRENT_SIZE - (peer * 7_919 % 1_000 + 1) * 65_536


def _downloaded(peer: int) -> int:
    return _TORRENT_SIZE - _left(peer)


def _uploaded(peer: int) -> int:
    return _downloaded(peer) // 2 + (peer % 97) * 16_384


def udp_announces(
    seed: int, peers: Sequence[int], torrent_of: Callable[[int], int], event: Event,
    addresses: int = DEFAULT_ADDRESSES,
) -> UdpOps:
    """Announce bodies for ``peers`` (peer index -> torrent index by ``torrent_of``), each
    from its peer's source address."""
    pack = _BODY.pack
    bodies = [
        pack(
            info_hash_for(seed, torrent_of(p)),
            peer_id_for(p),
            _downloaded(p),
            _left(p),
            _uploaded(p),
            int(event),
            0,
            key_for(seed, p),
            50,
            port_for(p, addresses),
        )
        for p in peers
    ]
    sources = [source_for(p, addresses) for p in peers]
    return UdpOps([ACTION_ANNOUNCE] * len(bodies), bodies, [20 + 6 * 50] * len(bodies), sources)


def announce_records(
    seed: int, peers: Sequence[int], torrent_of: Callable[[int], int], event: Event,
    addresses: int = DEFAULT_ADDRESSES,
) -> list[Announce]:
    """The same announces as records, for HTTP encoding."""
    return [
        Announce(
            info_hash=info_hash_for(seed, torrent_of(p)),
            peer_id=peer_id_for(p),
            port=port_for(p, addresses),
            key=key_for(seed, p),
            uploaded=_uploaded(p),
            downloaded=_downloaded(p),
            left=_left(p),
            event=event,
            numwant=50,
            source=source_for(p, addresses),
        )
        for p in peers
    ]


class Announcer:
    """Sends announces of given peers to one target, by UDP when it can, each from its
    peer's source address."""

    def __init__(self, target: RunningTarget, seed: int, addresses: int) -> None:
        self.target = target
        self.seed = seed
        self.addresses = addresses
        sources = source_addresses(addresses)
        self.udp = UdpLoad("127.0.0.1", target.port, sources=sources, window=128, seed=seed)
        self.http = HttpLoad(
            "127.0.0.1", target.port, "keepalive", connections=32, sources=sources
        )

    @property
    def protocol(self) -> str:
        return "udp" if self.target.udp else "http"

    async def send(
        self,
        peers: Sequence[int],
        torrent_of: Callable[[int], int],
        event: Event,
        *,
        duration: float | None = None,
        record: bool = False,
    ) -> LoadStats:
        """Announce each of ``peers`` once (``duration`` None) or cycle for ``duration``."""
        count = None if duration is not None else len(peers)
        ops = self.ops(peers, torrent_of, event)
        if isinstance(ops, UdpOps):
            return await self.udp.run(ops, count=count, duration=duration, record=record)
        return await self.http.run(ops, count=count, duration=duration, record=record)

    def ops(
        self, peers: Sequence[int], torrent_of: Callable[[int], int], event: Event
    ) -> UdpOps | HttpOps:
        """The announces of ``peers``, encoded for the target's protocol."""
        if self.target.udp:
            return udp_announces(self.seed, peers, torrent_of, event, self.addresses)
        records = announce_records(self.seed, peers, torrent_of, event, self.addresses)
        return encode_http_ops(records, close=False)

    async def closed(
        self,
        peers: Sequence[int],
        torrent_of: Callable[[int], int],
        event: Event,
        *,
        window: int,
        duration: float,
        warmup: float,
    ) -> latgen.PacedResult:
        """Cycle the announces of ``peers`` for ``warmup`` then ``duration`` seconds in the C
        generator's closed loop (``window`` requests in flight); the result's ``cpu_s`` is
        the tracker's CPU over the recorded part."""
        ops = self.ops(peers, torrent_of, event)
        mode = "udp" if isinstance(ops, UdpOps) else "http-keepalive"
        return await latgen.run_closed(
            mode, self.target.port, source_addresses(self.addresses), ops,
            window=window, duration=duration, warmup=warmup,
            timeout=latgen.reply_timeout(mode), cpu_pids=process_tree(self.target.pid),
        )

    async def fill(
        self, first: int, end: int, torrent_of: Callable[[int], int]
    ) -> tuple[int, float]:
        """Start peers ``first..end-1`` in chunks; return (lost or failed, seconds)."""
        bad = 0
        t0 = time.monotonic()
        for lo in range(first, end, CHUNK):
            stats = await self.send(range(lo, min(end, lo + CHUNK)), torrent_of, Event.STARTED)
            bad += stats.errors + stats.timeouts
        return bad, time.monotonic() - t0

    def close(self) -> None:
        self.udp.close()
        self.http.close()


async def swarm_series(
    name: str, args: argparse.Namespace, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Announce cost at each swarm size, one torrent, one tracker instance."""
    sizes = [n for n in SWARM_SIZES if n <= args.max_peers]
    target = start_target(name, [info_hash_for(args.seed, 0)], shoal_settings=args.shoal_set)
    announcer = Announcer(target, args.seed, args.addresses)
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    filled = 0
    use_c = args.generator == "c" and latgen.available() is None
    window = args.udp_window if target.udp else args.http_connections
    try:
        for n in sizes:
            bad, fill_s = await announcer.fill(filled, n, lambda p: 0)
            filled = n
            sample = [rng.randrange(n) for _ in range(min(n * 4, SWARM_DRAWS))]
            if use_c:
                result = await announcer.closed(
                    sample, lambda p: 0, Event.NONE, window=window,
                    duration=args.point_duration, warmup=args.point_warmup,
                )
                cpu = result.cpu_s or 0.0
                responses, elapsed = result.responses, result.elapsed
                p50, p99 = result.service["p50_ms"], result.service["p99_ms"]
                errors, timeouts = result.errors, result.timeouts
            else:
                await announcer.send(sample, lambda p: 0, Event.NONE, duration=args.point_warmup)
                cpu0, wall0 = target.cpu_seconds(), time.monotonic()
                stats = await announcer.send(
                    sample, lambda p: 0, Event.NONE, duration=args.point_duration, record=True
                )
                cpu = target.cpu_seconds() - cpu0
                # The Python generator's own clock for the rate, the wall for the CPU share.
                responses, elapsed = stats.responses, time.monotonic() - wall0
                p50, p99 = stats.percentile_ms(0.5), stats.percentile_ms(0.99)
                errors, timeouts = stats.errors, stats.timeouts
            counts = scrape_counts(target.port, info_hash_for(args.seed, 0))
            row: dict[str, Any] = {
                "kind": "scaling-swarm",
                "target": name,
                "protocol": announcer.protocol,
                "swarm_peers": n,
                "tracker_swarm": sum(counts) if counts else None,
                "generator": "c" if use_c else "python",
                "window": window if use_c else None,
                "draws": len(sample),
                "responses": responses,
                "responses_per_s": round(responses / elapsed, 1) if elapsed > 0 else None,
                "tracker_cpu_s": round(cpu, 3),
                "tracker_cpu_share": round(cpu / elapsed, 3) if elapsed > 0 else None,
                "responses_per_cpu_s": round(responses / cpu, 1) if cpu > 0 else None,
                "p50_ms": p50,
                "p99_ms": p99,
                "errors": errors + bad,
                "timeouts": timeouts,
                "fill_s": round(fill_s, 2),
            }
            rows.append(row)
            log(
                f"swarm {name:11} {n:>8,} peers (tracker says {row['tracker_swarm']}): "
                f"{_fmt(row['responses_per_cpu_s'])} resp/cpu-s, "
                f"{_fmt(row['responses_per_s'])} resp/s, tracker CPU "
                f"{_fmt(_pct(row['tracker_cpu_share']))}%, p99 {_fmt(row['p99_ms'], 2)} ms, "
                f"errors {row['errors']}+{row['timeouts']}"
            )
    finally:
        announcer.close()
        target.stop()
    return rows


async def memory_series(
    name: str, args: argparse.Namespace, log: Callable[[str], None]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """RSS against peers (ten per torrent), then RSS over a steady announce load."""
    points = [n for n in MEMORY_POINTS if n <= args.max_peers] or [args.max_peers]
    per_torrent = args.peers_per_torrent
    n_torrents = min(args.max_torrents, max(1, -(-points[-1] // per_torrent)))
    info_hashes = [info_hash_for(args.seed, t) for t in range(n_torrents)]
    target = start_target(name, info_hashes, shoal_settings=args.shoal_set)
    announcer = Announcer(target, args.seed, args.addresses)

    def torrent_of(p: int) -> int:
        return (p // per_torrent) % n_torrents

    rows: list[dict[str, Any]] = []
    steady: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(1.0)
        baseline = target.memory_kib()["VmRSS"]
        filled = 0
        for n in points:
            bad, fill_s = await announcer.fill(filled, n, torrent_of)
            filled = n
            await asyncio.sleep(args.settle)
            rss = target.memory_kib()["VmRSS"]
            row = {
                "kind": "scaling-memory",
                "target": name,
                "protocol": announcer.protocol,
                "peers": n,
                "torrents": min(n_torrents, -(-n // per_torrent)),
                "peers_per_torrent": per_torrent,
                "baseline_rss_kib": baseline,
                "rss_kib": rss,
                "bytes_per_peer": round((rss - baseline) * 1024 / n, 1),
                "fill_s": round(fill_s, 2),
                "fill_rate": round((n - (rows[-1]["peers"] if rows else 0)) / fill_s, 1),
                "errors": bad,
            }
            rows.append(row)
            log(
                f"memory {name:11} {n:>9,} peers: RSS {rss / 1024:,.1f} MiB "
                f"(baseline {baseline / 1024:,.1f}), {row['bytes_per_peer']:,.0f} bytes/peer, "
                f"fill {fill_s:.1f} s, lost/failed {bad}"
            )
        if args.steady_seconds > 0:
            rng = random.Random(args.seed)
            sample = [rng.randrange(filled) for _ in range(min(filled, 100_000))]
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.steady_seconds:
                stats = await announcer.send(
                    sample, torrent_of, Event.NONE, duration=args.steady_step
                )
                mem = target.memory_kib()
                steady.append(
                    {
                        "kind": "scaling-steady",
                        "target": name,
                        "peers": filled,
                        "t_s": round(time.monotonic() - t0, 1),
                        "rss_kib": mem["VmRSS"],
                        "responses": stats.responses,
                        "errors": stats.errors + stats.timeouts,
                    }
                )
            first, last = steady[0]["rss_kib"], steady[-1]["rss_kib"]
            log(
                f"steady {name:11} {filled:>9,} peers, {steady[-1]['t_s']:.0f} s of announces: "
                f"RSS {first / 1024:,.1f} -> {last / 1024:,.1f} MiB"
            )
    finally:
        announcer.close()
        target.stop()
    return rows, steady


async def sweep_series(
    name: str, args: argparse.Namespace, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Shoal's sweep: idle CPU empty, with live silent peers, and while they expire."""
    n = min(args.sweep_peers, args.max_peers)
    n_torrents = max(1, -(-n // PEERS_PER_TORRENT))
    window = args.sweep_window
    # Long enough that no peer expires before the live window ends (fill included).
    timeout = int(window * 2 + n / 20_000 + args.sweep_margin)
    settings = [
        *args.shoal_set,
        f"tracker.peer_timeout={timeout}",
        "tracker.sweep_interval=1",
    ]
    info_hashes = [info_hash_for(args.seed, t) for t in range(n_torrents)]
    target = start_target(name, info_hashes, shoal_settings=settings)
    announcer = Announcer(target, args.seed, args.addresses)

    def torrent_of(p: int) -> int:
        return p // PEERS_PER_TORRENT

    async def idle_cpu(seconds: float) -> float:
        c0 = target.cpu_seconds()
        await asyncio.sleep(seconds)
        return target.cpu_seconds() - c0

    try:
        await asyncio.sleep(1.0)
        baseline = await idle_cpu(window) / window  # CPU-s per s, empty tracker
        fill_started = time.monotonic()
        bad, fill_s = await announcer.fill(0, n, torrent_of)
        live = await idle_cpu(window) / window - baseline
        passes_per_s = 1.0  # sweep_interval=1
        per_examined_us = live / passes_per_s / n * 1e6 if n else None
        # Wait for the expiry time of the first peers, then until the last torrent is empty.
        expire_at = fill_started + timeout
        await asyncio.sleep(max(0.0, expire_at - time.monotonic()))
        c0, t0 = target.cpu_seconds(), time.monotonic()
        last_hash = info_hashes[torrent_of(n - 1)]
        deadline = t0 + fill_s + timeout
        emptied = False
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            counts = scrape_counts(target.port, last_hash)
            if counts is not None and sum(counts) == 0:
                emptied = True
                break
        expiry_wall = time.monotonic() - t0
        expiry_cpu = target.cpu_seconds() - c0 - baseline * expiry_wall
        row = {
            "kind": "scaling-sweep",
            "target": name,
            "peers": n,
            "torrents": n_torrents,
            "peer_timeout_s": timeout,
            "idle_cpu_share_empty": round(baseline, 4),
            "sweep_cpu_share_live": round(live, 4),
            "us_per_peer_examined": round(per_examined_us, 3) if per_examined_us else None,
            "full_pass_ms": round(live / passes_per_s * 1000, 2),
            "default_interval_cpu_share": round(live / passes_per_s / 60, 6),
            "expiry_wall_s": round(expiry_wall, 2),
            "all_expired": emptied,
            "us_per_peer_removed": round(max(expiry_cpu, 0.0) / n * 1e6, 3) if n else None,
            "errors": bad,
        }
        log(
            f"sweep {name:11} {n:>9,} peers: a pass over live peers costs "
            f"{row['full_pass_ms']} ms ({_fmt(row['us_per_peer_examined'], 3)} us/peer), "
            f"removing them {_fmt(row['us_per_peer_removed'], 3)} us/peer"
            + ("" if emptied else " (not all expired in time)")
        )
        return [row]
    finally:
        announcer.close()
        target.stop()


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(share: float | None) -> float | None:
    return None if share is None else share * 100


FLAT_FROM = (1, 10, 100)
FLAT_TO = 100_000
MEMORY_AT = 1_000_000
MEMORY_GOAL = 50  # issue 11: at most 50 bytes a peer at 1,000,000 peers (compiled table)


def flatness(swarm: list[dict[str, Any]], target: str) -> dict[int, float]:
    """The cost of an announce (tracker CPU per response) in the largest swarm measured
    (100,000 peers by default) over its cost at 1, 10 and 100 peers, by the smaller size."""
    rpc = {r["swarm_peers"]: r["responses_per_cpu_s"] for r in swarm if r["target"] == target}
    top = max(rpc, default=0)
    if not top or not rpc[top]:
        return {}
    return {n: rpc[n] / rpc[top] for n in FLAT_FROM if n < top and rpc.get(n)}


def headline(swarm: list[dict[str, Any]], memory: list[dict[str, Any]]) -> str:
    """Issue 11's two figures per target: how flat announce cost is from 1 to 100,000 peers
    in a swarm, and bytes per peer at 1,000,000 peers."""
    names = list(dict.fromkeys(r["target"] for r in [*swarm, *memory]))
    lines = [
        "| target | announce cost at 100,000 peers / at 1 peer | / at 10 | / at 100 "
        "| bytes per peer at 1,000,000 peers |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        ratios = flatness(swarm, name)
        top = max((r["swarm_peers"] for r in swarm if r["target"] == name), default=0)
        at = [r for r in memory if r["target"] == name and r["peers"] == MEMORY_AT]
        size = "" if top in (0, FLAT_TO) else f" (largest: {top:,})"
        lines.append(
            f"| {name}{size} | {_fmt(ratios.get(1), 2)}x | {_fmt(ratios.get(10), 2)}x "
            f"| {_fmt(ratios.get(100), 2)}x "
            f"| {_fmt(at[0]['bytes_per_peer'], 1) if at else '-'} |"
        )
    if len(lines) == 2:
        return ""
    return "\n".join([
        "Issue 11's figures: announce cost (tracker CPU per response) in a swarm of 100,000 "
        "peers over its cost in a swarm of 1, of 10 and of 100 (1.00x: flat; below 51 peers "
        "a reply holds fewer than numwant 50 peers, so it is cheaper: from 100 on every "
        "reply is full), and RSS per peer at "
        f"1,000,000 peers (goal for Shoal's compiled table: at most {MEMORY_GOAL} bytes; "
        "opentracker keeps about 25).",
        "",
        *lines,
    ])


def _generator_note(swarm: list[dict[str, Any]]) -> str:
    """Which generator loaded the swarm points, for the table's heading."""
    kinds = {r.get("generator", "python") for r in swarm}
    notes = []
    if "c" in kinds:
        windows = sorted({r["window"] for r in swarm if r.get("generator") == "c"})
        notes.append(
            "the C generator in a closed loop, "
            + "/".join(str(w) for w in windows)
            + " requests in flight: the tracker sets the pace, its CPU share says how busy "
            "it was; p50/p99 are service times, send to reply"
        )
    if "python" in kinds:
        notes.append(
            "the Python generator" + (" for some points" if "c" in kinds else "")
            + ", which one core caps near 40,000 replies a second"
        )
    return "; ".join(notes)


def tables(
    swarm: list[dict[str, Any]],
    memory: list[dict[str, Any]],
    steady: list[dict[str, Any]],
    sweep: list[dict[str, Any]] | None = None,
) -> str:
    out: list[str] = []
    summary = headline(swarm, memory)
    if summary:
        out += [summary, ""]
    if swarm:
        out += [
            "Announce cost against swarm size (one torrent, regular announces, numwant 50; "
            + _generator_note(swarm) + "):",
            "",
            "| target | swarm peers | tracker's count | responses/s | tracker CPU "
            "| responses per tracker CPU-s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in swarm:
            out.append(
                f"| {r['target']} | {r['swarm_peers']:,} | {_fmt(r['tracker_swarm'])} "
                f"| {_fmt(r['responses_per_s'])} "
                f"| {_fmt(_pct(r.get('tracker_cpu_share')))}% "
                f"| **{_fmt(r['responses_per_cpu_s'])}** "
                f"| {_fmt(r['p50_ms'], 2)} | {_fmt(r['p99_ms'], 2)} "
                f"| {r['errors'] + r['timeouts']} |"
            )
        out.append("")
    if memory:
        out += [
            f"Memory against peers ({PEERS_PER_TORRENT} peers per torrent, at most "
            f"{MAX_TORRENTS:,} torrents; RSS minus the empty tracker's):",
            "",
            "| target | peers | torrents | RSS MiB | baseline MiB | bytes per peer "
            "| fill announces/s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in memory:
            out.append(
                f"| {r['target']} | {r['peers']:,} | {r['torrents']:,} "
                f"| {r['rss_kib'] / 1024:,.1f} | {r['baseline_rss_kib'] / 1024:,.1f} "
                f"| **{r['bytes_per_peer']:,.0f}** | {_fmt(r['fill_rate'])} |"
            )
        out.append("")
    if steady:
        out += [
            "Memory under steady announces after the fill (no new peers):",
            "",
            "| target | peers | seconds | RSS MiB at start | RSS MiB at end | growth |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in dict.fromkeys(r["target"] for r in steady):
            rs = [r for r in steady if r["target"] == name]
            a, b = rs[0]["rss_kib"], rs[-1]["rss_kib"]
            out.append(
                f"| {name} | {rs[0]['peers']:,} | {rs[-1]['t_s']:.0f} | {a / 1024:,.1f} "
                f"| {b / 1024:,.1f} | {(b - a) / 1024:+,.1f} MiB |"
            )
        out.append("")
    if sweep:
        out += [
            "Sweep cost (expiring silent peers; Shoal only, opentracker's is compiled in; "
            "CPU above the empty tracker's idle CPU):",
            "",
            "| target | peers | CPU per pass over live peers | us per peer examined "
            "| CPU share, 60 s interval | us per peer removed | all expired |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sweep:
            out.append(
                f"| {r['target']} | {r['peers']:,} | {r['full_pass_ms']:,.1f} ms "
                f"| {_fmt(r['us_per_peer_examined'], 3)} "
                f"| {r['default_interval_cpu_share'] * 100:.3f}% "
                f"| {_fmt(r['us_per_peer_removed'], 3)} | {'yes' if r['all_expired'] else 'no'} |"
            )
        out.append("")
    return "\n".join(out)


def plots(swarm: list[dict[str, Any]], memory: list[dict[str, Any]], out: Path) -> list[Path]:
    """One PNG per series; nothing (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[Path] = []
    for rows, x_key, y_key, title, ylabel, name in (
        (
            swarm,
            "swarm_peers",
            "responses_per_cpu_s",
            "Announce cost against swarm size (higher is cheaper)",
            "responses per tracker CPU-second",
            "scaling-swarm.png",
        ),
        (
            memory,
            "peers",
            "bytes_per_peer",
            "Memory per peer (RSS minus empty tracker)",
            "bytes per peer",
            "scaling-memory.png",
        ),
    ):
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for target in dict.fromkeys(r["target"] for r in rows):
            pts = [(r[x_key], r[y_key]) for r in rows if r["target"] == target and r[y_key]]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=target)
        ax.set_xscale("log")
        ax.set_xlabel(x_key.replace("_", " "))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench scaling",
        description="How cost grows with swarm size and with peers (see bench/scaling.py).",
    )
    p.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help="comma-separated, of shoal (tracker.engine=auto), shoal-native, shoal-python, "
        "opentracker",
    )
    p.add_argument(
        "--addresses", type=int, default=DEFAULT_ADDRESSES,
        help=f"loopback source addresses the peers come from ({DEFAULT_ADDRESSES})",
    )
    p.add_argument(
        "--series",
        default="swarm,memory,sweep",
        help="comma-separated: swarm, memory (with steady), sweep",
    )
    p.add_argument("--sweep-peers", type=int, default=300_000, help="peers for the sweep series")
    p.add_argument("--sweep-window", type=float, default=5.0, help="seconds per idle window")
    p.add_argument(
        "--sweep-margin", type=float, default=10.0, help="spare seconds before peers time out"
    )
    p.add_argument("--max-peers", type=int, default=1_000_000, help="bounds both series")
    p.add_argument("--peers-per-torrent", type=int, default=PEERS_PER_TORRENT,
                   help="memory series: 1 gives the cost of a one-peer torrent")
    p.add_argument("--max-torrents", type=int, default=MAX_TORRENTS,
                   help="memory series: torrents the peers are spread over, at most")
    p.add_argument("--point-duration", type=float, default=4.0, help="measured s per swarm size")
    p.add_argument("--point-warmup", type=float, default=1.0)
    p.add_argument(
        "--generator", choices=("c", "python"), default="c",
        help="swarm series: c (bench/latgen.c in a closed loop, the tracker sets the pace; "
        "Python when it cannot be built) or python (the asyncio generators) (c)",
    )
    p.add_argument("--udp-window", type=int, default=128,
                   help="swarm series, C generator: UDP requests in flight (128)")
    p.add_argument("--http-connections", type=int, default=64,
                   help="swarm series, C generator: HTTP requests in flight (64)")
    p.add_argument("--steady-seconds", type=float, default=30.0, help="0: skip the steady run")
    p.add_argument("--steady-step", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--settle", type=float, default=1.0, help="seconds before reading RSS")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--shoal-set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny fast run")
    args = p.parse_args(argv)
    if args.quick:
        args.max_peers = min(args.max_peers, 1_000)
        args.point_duration, args.point_warmup = 1.0, 0.2
        args.steady_seconds, args.steady_step, args.settle = 2.0, 1.0, 0.2
        args.sweep_window, args.sweep_margin = 1.0, 2.0
    args.targets = [t for t in args.targets.split(",") if t]
    args.series = [s for s in args.series.split(",") if s]
    for t in args.targets:
        if t not in (*SHOAL_TARGETS, "opentracker"):
            p.error(f"unknown target {t!r}")
    if not 1 <= args.addresses <= 25_000:
        p.error("--addresses must be 1 to 25,000")
    return args


def main(argv: Sequence[str] | None = None, *, log: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    pin_generator()
    targets = list(args.targets)
    if "opentracker" in targets and not opentracker_available():
        log("opentracker is not installed (bash scripts/install-bench-deps.sh): Shoal only")
        targets.remove("opentracker")
    swarm: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    steady: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    shoals = [t for t in targets if t in SHOAL_TARGETS]
    sweep_target = next((t for t in shoals if t != PYTHON_TARGET), shoals[0] if shoals else "")
    for name in targets:
        try:
            if "swarm" in args.series:
                swarm += run_async(swarm_series(name, args, log))
            if "memory" in args.series:
                rows, st = run_async(memory_series(name, args, log))
                memory += rows
                steady += st
            # The sweep is Shoal's (opentracker's is compiled in): once, on the first
            # Shoal target with the compiled table when there is one.
            if "sweep" in args.series and name == sweep_target:
                sweep += run_async(sweep_series(name, args, log))
        except TargetError as exc:
            log(f"{name}: {exc}")
    machine = machine_info()
    report = (
        f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs, Python {machine['python']}, "
        f"{machine['event_loop']}, opentracker {machine['opentracker'] or '-'}, "
        f"Shoal {machine['shoal_commit'] or '-'}, {machine['date']}.\n"
        f"Command: `{machine['command']}`\n\n" + tables(swarm, memory, steady, sweep)
    )
    log("")
    log(report)
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scaling.md").write_text(report + "\n")
        with open(args.out / "results.jsonl", "a") as f:
            for row in swarm + memory + steady + sweep:
                f.write(json.dumps({**row, "machine": machine}) + "\n")
        written = plots(swarm, memory, args.out)
        if not written and (swarm or memory):
            log("matplotlib is not installed: no plots (bash scripts/install-bench-deps.sh)")
        for path in written:
            log(f"plot: {path}")
        log(f"written: {args.out / 'scaling.md'}, appended to {args.out / 'results.jsonl'}")
    return 0
