"""The spoofed-flood figure: tracker CPU per UDP datagram that carries a made-up connection
id (what a flood from forged source addresses costs), on the compiled and the pure-Python
UDP paths side by side in one run.

``python -m bench.flood [--datagrams N] [--size BYTES]``: for each path, start Shoal on
loopback (pinned like the benchmark's targets), send ``N`` announce datagrams with random
connection ids from 127.0.0.1 (paced only by the sender), wait until the tracker has counted
what arrived, and report the tracker's CPU time per datagram it counted (its
``udp_bad_connection_id`` drops, read from ``/metrics``).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.targets import HOST, _pin_after_start, _pinned, free_port, shoal_command

_METRIC = re.compile(rb'shoal_dropped_total\{cause="udp_bad_connection_id"\} (\d+)')


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _dropped(admin: int) -> int:
    with urllib.request.urlopen(f"http://{HOST}:{admin}/metrics", timeout=5) as reply:
        found = _METRIC.search(reply.read())
    return int(found.group(1)) if found else 0


def measure(engine: str, datagrams: int, size: int) -> tuple[int, float]:
    """(datagrams the tracker counted, tracker CPU seconds spent on them)."""
    port, admin = free_port(), free_port()
    cmd = shoal_command(port, [f"tracker.engine={engine}"], admin_port=admin)
    process = subprocess.Popen(_pinned(cmd), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _pin_after_start(process.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                _dropped(admin)
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"Shoal (tracker.engine={engine}) exited at start; "
                                       f"is the extension built?") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        body = struct.pack(">II", 1, 7) + bytes(max(0, size - 16))
        ids = [os.urandom(8) for _ in range(1024)]
        before = _cpu_seconds(process.pid)
        for n in range(datagrams):
            sock.sendto(ids[n & 1023] + body, (HOST, port))
        time.sleep(1.0)  # let the tracker drain its socket buffer
        cpu = _cpu_seconds(process.pid) - before
        counted = _dropped(admin)
        sock.close()
        return counted, cpu
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datagrams", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=98, help="bytes per datagram (98)")
    args = parser.parse_args()
    results: dict[str, float] = {}
    for engine in ("native", "python"):
        counted, cpu = measure(engine, args.datagrams, args.size)
        results[engine] = cpu / max(counted, 1)
        print(f"{engine:7} {counted:>9,} datagrams counted, {cpu:6.2f} CPU-s, "
              f"{results[engine] * 1e6:6.2f} us per datagram")
    if results["native"] > 0:
        ratio = f"{results['python'] / results['native']:.1f}x"
    else:  # a short run on the native path can take less CPU than the clock counts (a tick)
        ratio = "n/a (the native run took less CPU than one clock tick: more --datagrams)"
    print(f"python / native CPU per spoofed datagram: {ratio}")


if __name__ == "__main__":
    main()
