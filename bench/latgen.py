"""Latency at a fixed rate, measured by a small C generator (``bench/latgen.c``).

The Python generators (:mod:`bench.udp_load`, :mod:`bench.http_load`) cost tens of
microseconds per reply, so at tens of thousands of replies a second a reply often waits in
the generator's socket buffer, or a request goes out late, while the generator is busy
with others: their p99 at half of a fast tracker's peak is the generator's, not the
tracker's (opentracker's showed 3.5 ms). The C generator sends the same pre-encoded
requests on an even schedule (one every 1/rate seconds, open loop), reads the clock just
before each send, and takes each reply's arrival time from the kernel's receive timestamp,
so time a reply spends queued behind this process is not billed to the tracker. It reports
two latencies per reply: *service* (from the send, or for HTTP close from the connect, to
the reply's arrival) and *schedule* (from when the request was due: the open loop's
honest figure, queueing for a free connection and this generator's lateness included).

The program is compiled on first use with the system C compiler into ``build/`` (keyed
by a hash of its source); :func:`available` says whether that worked, and the runner falls
back to the Python generator when it did not.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.http_load import HttpOps
from bench.udp_load import UdpOps, check_sources

SOURCE = Path(__file__).with_name("latgen.c")
BUILD_DIR = Path(__file__).resolve().parents[1] / "build"
MODES = ("udp", "http-keepalive", "http-close")
_MAGIC = b"SLG1"
_OP_HEAD = struct.Struct("<III")

_built: Path | None = None
_build_error: str | None = None


def reply_timeout(mode: str) -> float:
    """Seconds the benchmark waits for a reply before counting a timeout: a lost UDP
    datagram is never coming, while an HTTP reply may wait behind a connection's setup."""
    return 1.0 if mode == "udp" else 5.0


def build() -> Path:
    """The compiled generator, compiled now if its source changed; OSError if it cannot be."""
    global _built, _build_error
    if _built is not None and _built.exists():
        return _built
    source = SOURCE.read_bytes()
    digest = hashlib.blake2b(source, digest_size=8).hexdigest()
    binary = BUILD_DIR / f"latgen-{digest}"
    if not binary.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise OSError("no C compiler (cc) to build bench/latgen.c")
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(f".{os.getpid()}.tmp")
        out = subprocess.run(
            [cc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if out.returncode != 0:
            raise OSError(f"{cc} could not build bench/latgen.c: {out.stderr.strip()[-500:]}")
        tmp.replace(binary)
    _built = binary
    return binary


def available() -> str | None:
    """None when the C generator can be used, else why not (built once per process)."""
    global _build_error
    if _build_error is None and _built is None:
        try:
            build()
        except (OSError, subprocess.SubprocessError) as exc:
            _build_error = str(exc)
    return _build_error


def write_ops(path: Path, sources: list[str], ops: UdpOps | HttpOps) -> None:
    """The generator's input: b"SLG1", the source count and each source's 4 address bytes,
    the operation count, then per operation a little-endian u32 of source | connect << 16
    | kind << 24, a u32 size limit (UDP replies), a u32 body length and the body (UDP: the
    request after its 16-byte header; HTTP: the whole request)."""
    parts = [_MAGIC, struct.pack("<I", len(sources))]
    parts += [ipaddress.IPv4Address(s).packed for s in sources]
    parts.append(struct.pack("<I", len(ops)))
    if isinstance(ops, UdpOps):
        for i, body in enumerate(ops.bodies):
            source = ops.sources[i] if ops.sources else 0
            connect = ops.connects[i] if ops.connects else 0
            head = source | connect << 16 | ops.actions[i] << 24
            parts += [_OP_HEAD.pack(head, ops.sizes[i], len(body)), body]
    else:
        for i, request in enumerate(ops.requests):
            source = ops.sources[i] if ops.sources else 0
            parts += [_OP_HEAD.pack(source | ops.kinds[i] << 24, 0, len(request)), request]
    path.write_bytes(b"".join(parts))


@dataclass(slots=True)
class PacedResult:
    """What one paced run of the C generator saw (its JSON, with the headline figures)."""

    responses: int
    errors: int
    timeouts: int
    skipped: int
    elapsed: float
    service: dict[str, Any]
    schedule: dict[str, Any]
    cpu_s: float | None = None  # the cpu_pids' CPU seconds over the recorded part
    connects: int = 0  # UDP connect replies among the recorded part's
    raw: dict[str, Any] = field(default_factory=dict)

    def rate(self) -> float:
        """Checked responses per second of the paced time."""
        return self.responses / self.elapsed if self.elapsed > 0 else 0.0


async def run_paced(
    mode: str,
    port: int,
    sources: list[str],
    ops: UdpOps | HttpOps,
    *,
    rate: float,
    duration: float,
    warmup: float = 0.0,
    timeout: float = 1.0,
    connections: int = 64,
    cpu_pids: Sequence[int] = (),
) -> PacedResult:
    """Offer ``rate`` requests a second of ``ops`` (cycling) to the tracker on
    ``127.0.0.1:port`` from ``sources`` for ``warmup`` seconds (the same schedule, not
    recorded: HTTP keep-alive connections get opened) and then ``duration`` seconds; the
    generator runs as a child process (it inherits this process's CPU pinning).
    ``cpu_pids``: processes whose CPU time over the recorded part goes in ``cpu_s``."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return await _run(mode, port, sources, ops, rate, duration, warmup, timeout, connections,
                      cpu_pids)


async def run_closed(
    mode: str,
    port: int,
    sources: list[str],
    ops: UdpOps | HttpOps,
    *,
    window: int,
    duration: float,
    warmup: float = 0.0,
    timeout: float = 1.0,
    cpu_pids: Sequence[int] = (),
) -> PacedResult:
    """Closed loop: keep ``window`` requests of ``ops`` in flight (HTTP: on at most that
    many connections), the next sent as soon as one is answered, for ``warmup`` seconds
    (not recorded) and then ``duration`` seconds: all the tracker can take, the peak
    phase. ``cpu_pids`` as for :func:`run_paced`."""
    if window <= 0:
        raise ValueError("window must be positive")
    return await _run(mode, port, sources, ops, 0.0, duration, warmup, timeout, window,
                      cpu_pids)


async def _run(
    mode: str,
    port: int,
    sources: list[str],
    ops: UdpOps | HttpOps,
    rate: float,
    duration: float,
    warmup: float,
    timeout: float,
    connections: int,
    cpu_pids: Sequence[int],
) -> PacedResult:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    sources = check_sources("127.0.0.1", sources)
    if duration <= 0 or warmup < 0:
        raise ValueError("duration must be positive, warmup not negative")
    if ops.sources and max(ops.sources) >= len(sources):
        raise ValueError(f"operations from source {max(ops.sources)}, but only "
                         f"{len(sources)} source addresses")
    binary = build()
    env = dict(os.environ, LATGEN_CPU_PIDS=",".join(str(p) for p in cpu_pids))
    with tempfile.TemporaryDirectory(prefix="shoal-latgen-") as tmp:
        path = Path(tmp) / "ops.bin"
        write_ops(path, sources, ops)
        cmd = [str(binary), mode, str(port), f"{rate:.3f}", f"{warmup:.3f}",
               f"{duration:.3f}", f"{timeout:.3f}", str(connections), str(path)]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(), timeout=warmup + duration + 3 * timeout + 30
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError("the C latency generator did not finish") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the C latency generator failed: {err.decode(errors='replace')}")
    raw = json.loads(out)
    return PacedResult(
        responses=raw["responses"],
        errors=raw["errors"],
        timeouts=raw["timeouts"],
        skipped=raw["skipped"],
        elapsed=raw["elapsed_s"],
        service=raw["service"],
        schedule=raw["schedule"],
        cpu_s=raw["cpu_s"],
        connects=raw["connects_measured"],
        raw=raw,
    )
