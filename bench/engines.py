"""The in-memory store's two engines side by side: ``python -m bench engines [options]``.

* Memory: a child process per engine fills a store with ``--peers`` peers, ``--per-torrent``
  to a torrent (10% seeders, IPv4), announced the way the tracker does (``store.announce``
  with AnnounceRequest records); its RSS after, minus its RSS before, over the peers is the
  bytes per peer. Every peer reports non-zero uploaded/downloaded totals (as real clients
  do); once with the store not keeping them (a public tracker's default), once keeping them
  (``StoreSettings.keep_totals``, as private mode does).
* Announce cost: instructions per announce counted by valgrind's callgrind (noise-free, so
  one run is a measurement). A child fills ``--torrents`` torrents of ``--per-torrent`` peers,
  then re-announces existing peers (numwant 50) N times; it runs with N and 2N announces, and
  the difference over N is the cost of one announce, the store call and the loop around it
  (the same loop for both engines).

Prints a markdown table and writes it with JSON lines under ``--out``
(bench/results/engines.md, engines.jsonl). Needs valgrind for the announce cost.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from shoal.storage.base import StoreSettings
from shoal.storage.memory import MemoryStore, native_available
from shoal.types import AnnounceRequest, Event

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def request(peer: int, per_torrent: int, numwant: int = 0) -> AnnounceRequest:
    torrent = peer // per_torrent
    info_hash = b"BNCH" + torrent.to_bytes(16, "big")
    addr = (0x0A000000 + peer).to_bytes(4, "big") + (6881 + peer % 1000).to_bytes(2, "big")
    return AnnounceRequest(
        info_hash=info_hash, peer_id=b"-BN0001-" + peer.to_bytes(12, "big"), addr=addr,
        uploaded=peer * 1000 + 1, downloaded=peer * 3000 + 1,
        left=0 if peer % 10 == 0 else 1000, event=Event.STARTED, numwant=numwant,
        key=peer & 0xFFFFFFFF or 1,
    )


def child_memory(engine: str, peers: int, per_torrent: int, keep: bool) -> dict[str, Any]:
    store = MemoryStore(StoreSettings(keep_totals=keep), engine=engine)
    gc.collect()
    before = rss()
    for peer in range(peers):
        store.announce(request(peer, per_torrent), 1_700_000_000)
    gc.collect()
    after = rss()
    totals = store.totals()
    assert totals.seeders + totals.leechers == peers, totals
    row: dict[str, Any] = {"engine": store.engine, "peers": peers, "per_torrent": per_torrent,
                           "keep_totals": keep, "rss_mib": round(after / 2**20, 1),
                           "bytes_per_peer": round((after - before) / peers, 1)}
    memory = getattr(store, "memory", None)
    if memory is not None:
        row["allocated_per_peer"] = round(memory() / peers, 1)
    return row


def child_announce(engine: str, torrents: int, per_torrent: int, calls: int) -> None:
    store = MemoryStore(engine=engine)
    peers = torrents * per_torrent
    for peer in range(peers):
        store.announce(request(peer, per_torrent), 1_700_000_000)
    again = [request(peer, per_torrent, numwant=50) for peer in range(min(peers, 1000))]
    for r in again:
        r.event = Event.NONE
    announce = store.announce
    n = len(again)
    for i in range(calls):
        announce(again[i % n], 1_700_000_001)


def callgrind_instructions(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
                       check=True, capture_output=True, timeout=1800)
        for line in out.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench engines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=1_000_000)
    parser.add_argument("--per-torrent", type=int, default=10)
    parser.add_argument("--torrents", type=int, default=1000, help="announce cost: torrents")
    parser.add_argument("--calls", type=int, default=20_000, help="announce cost: N")
    parser.add_argument("--skip", default="", help="memory,announce: parts to leave out")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "memory":
        print(json.dumps(child_memory(args.engine, args.peers, args.per_torrent, args.keep)))
        return 0
    if args.child == "announce":
        child_announce(args.engine, args.torrents, args.per_torrent, args.calls)
        return 0
    if not native_available():
        print("the compiled engine is not built (make)", file=sys.stderr)
        return 1
    engines = ["python", "native"]
    skip = set(args.skip.split(","))
    rows: list[dict[str, Any]] = []
    lines = [f"python -m bench engines {' '.join(argv)}".strip(), ""]
    me = [sys.executable, "-m", "bench", "engines"]
    if "memory" not in skip:
        lines += ["| engine | peers | per torrent | totals kept | RSS MiB | bytes per peer "
                  "| allocated per peer |", "|---|---:|---:|---|---:|---:|---:|"]
        for keep in (False, True):
            for engine in engines:
                cmd = [*me, "--child", "memory", "--engine", engine, "--peers", str(args.peers),
                       "--per-torrent", str(args.per_torrent)] + (["--keep"] * keep)
                done = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                      env={**os.environ, "SHOAL_ENGINE": ""}, timeout=3600)
                row = json.loads(done.stdout)
                rows.append({"kind": "memory", **row})
                lines.append(
                    f"| {engine} | {args.peers:,} | {args.per_torrent} | "
                    f"{'yes' if keep else 'no'} | {row['rss_mib']} | "
                    f"**{row['bytes_per_peer']}** | {row.get('allocated_per_peer', '')} |")
                print(lines[-1], flush=True)
        lines.append("")
    if "announce" not in skip and shutil.which("valgrind"):
        lines += ["| engine | instructions per announce | ratio |", "|---|---:|---:|"]
        cost: dict[str, float] = {}
        for engine in engines:
            counts = []
            for calls in (args.calls, 2 * args.calls):
                counts.append(callgrind_instructions(
                    [*me, "--child", "announce", "--engine", engine, "--torrents",
                     str(args.torrents), "--per-torrent", str(args.per_torrent), "--calls",
                     str(calls)]))
            cost[engine] = (counts[1] - counts[0]) / args.calls
            rows.append({"kind": "announce", "engine": engine, "calls": args.calls,
                         "instructions_per_announce": round(cost[engine])})
        for engine in engines:
            lines.append(f"| {engine} | {cost[engine]:,.0f} | "
                         f"{cost[engine] / cost['native']:.2f}x |")
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engines.md").write_text("\n".join(lines) + "\n")
    with open(args.out / "engines.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
