"""Soak: hostile load against a real Shoal process, ``python -m bench.soak`` (``make soak``).

For each attack in turn a fresh tracker is started on loopback (free HTTP/UDP and admin
ports), and for ``--seconds`` (15 by default) two processes run side by side: the attacker,
from source addresses 127.0.1.1-127.0.1.8, and a normal client from 127.0.0.1 sending steady
HTTP and UDP announces (``--rate`` a second in all, half each, every one with a 2 s
timeout). Meanwhile the tracker's RSS is sampled every 0.5 s. Then the attacker stops, the
tracker is probed over HTTP and UDP: "alive after" means it answered both within 10 s
(else the table says when it answered again, up to 60 s, or that it exited).

The attacks (``--attacks a,b`` picks some; ``baseline`` is no attack at all):

* ``http-flood``: 128 keep-alive connections sending announces (16 pipelined at a time) as
  fast as replies come back.
* ``slowloris``: up to 3,000 connections held open, each sending one more header byte every
  2-4 s; closed ones are reopened.
* ``pipeline-noread``: a swarm is first filled with 2,000 peers; then 200 connections each
  pipeline up to 500 ``compact=0&numwant=200`` announces for it and never read a reply.
* ``udp-options``: 64 KB announce datagrams (made-up connection id, the 98-byte announce,
  then NOP options to the end), as fast as the socket takes them.
* ``unique-torrents``: announces for random new info_hashes, over HTTP (keep-alive,
  pipelined) and UDP (with a valid connection id), as fast as possible.
* ``churn``: started/stopped pairs with random peer ids on 4 torrents, over HTTP and UDP.
* ``connect-flood``: UDP connect requests from 512 source ports.

Every loop is bounded by time and by count and stops by itself; the tracker and both
generator processes are stopped on any exit, Ctrl-C included. Only loopback addresses are
used. The table goes to stdout and ``<out>/soak.md``; one JSON line per run is appended to
``<out>/soak.jsonl``. Nothing is pinned: on a 2-core machine the attacker, the client and the
tracker share both cores, and the figures say how the tracker fares under that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.targets import REPO_ROOT, free_port, memory_kib, probe_http, probe_udp

HOST = "127.0.0.1"
ATTACK_SOURCES = [f"127.0.1.{i}" for i in range(1, 9)]
ATTACKS = (
    "baseline",
    "http-flood",
    "slowloris",
    "pipeline-noread",
    "udp-options",
    "unique-torrents",
    "churn",
    "connect-flood",
)
DEFAULT_OUT = REPO_ROOT / "bench" / "results"
NORMAL_TIMEOUT = 2.0
PROTOCOL_ID = 0x41727101980
_UDP_HEADER = struct.Struct(">QII")
_UDP_ANNOUNCE = struct.Struct(">20s20sQQQIIIiH")
BIG_SWARM = bytes.fromhex("5e" * 20)
PROBE_HASH = bytes.fromhex("50" * 20)


def _q(value: bytes) -> str:
    return urllib.parse.quote_from_bytes(value, safe="")


def http_announce(
    info_hash: bytes, peer_id: bytes, port: int, extra: str = "", close: bool = False
) -> bytes:
    """One complete GET /announce request."""
    line = (
        f"GET /announce?info_hash={_q(info_hash)}&peer_id={_q(peer_id)}&port={port}"
        f"&uploaded=0&downloaded=0&left=100{extra} HTTP/1.1\r\nHost: {HOST}\r\n"
    )
    return (line + ("Connection: close\r\n\r\n" if close else "\r\n")).encode()


def udp_announce(cid: int, txid: int, info_hash: bytes, peer_id: bytes, event: int = 0) -> bytes:
    """One 98-byte BEP 15 announce."""
    body = _UDP_ANNOUNCE.pack(info_hash, peer_id, 0, 100, 0, event, 0, 7, 50, 6881)
    return _UDP_HEADER.pack(cid, 1, txid) + body


def peer_id(rng: random.Random) -> bytes:
    return b"-SK0001-" + rng.randbytes(12)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


# -- HTTP helpers (asyncio streams) ---------------------------------------------------------


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One HTTP reply's body (Content-Length framed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


async def open_from(
    source: str, port: int, timeout: float = 2.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(HOST, port, local_addr=(source, 0)), timeout
    )


def abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()


class Counter:
    """What an attack did: requests (or connections, datagrams) sent, errors met."""

    def __init__(self, deadline: float, limit: int) -> None:
        self.deadline = deadline
        self.limit = limit
        self.sent = 0
        self.errors: dict[str, int] = {}

    def running(self) -> bool:
        return time.monotonic() < self.deadline and self.sent < self.limit

    def error(self, exc: BaseException | str) -> None:
        name = exc if isinstance(exc, str) else type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


async def http_pipeline_worker(
    c: Counter, source: str, port: int, make: Callable[[], bytes], depth: int = 16
) -> None:
    """Keep one keep-alive connection busy: ``depth`` requests out, read their replies,
    repeat; reconnect when the tracker closes it."""
    while c.running():
        try:
            reader, writer = await open_from(source, port)
        except (TimeoutError, OSError) as exc:
            c.error(exc)
            await asyncio.sleep(0.05)
            continue
        try:
            while c.running():
                writer.write(b"".join(make() for _ in range(depth)))
                c.sent += depth
                remaining = max(0.1, c.deadline - time.monotonic() + 1.0)
                for _ in range(depth):
                    await asyncio.wait_for(read_reply(reader), min(5.0, remaining))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            c.error(exc)
        finally:
            abort(writer)


# -- UDP helpers ----------------------------------------------------------------------------


def udp_socket(source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.setblocking(False)
    return s


def drain(s: socket.socket) -> list[bytes]:
    """Whatever replies are waiting on ``s`` (non-blocking)."""
    out = []
    for _ in range(1000):
        try:
            out.append(s.recv(2048))
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
    return out


def udp_connect_id(s: socket.socket, port: int, timeout: float = 2.0) -> int | None:
    """A connection id for socket ``s`` (blocking briefly), or None."""
    txid = random.getrandbits(32)
    deadline = time.monotonic() + timeout
    s.sendto(_UDP_HEADER.pack(PROTOCOL_ID, 0, txid), (HOST, port))
    while time.monotonic() < deadline:
        for data in drain(s):
            if len(data) == 16 and struct.unpack_from(">II", data) == (0, txid):
                return int.from_bytes(data[8:16], "big")
        time.sleep(0.005)
    return None


async def udp_blast(
    c: Counter, port: int, make: Callable[[int, int], bytes], sockets: int = 8,
    need_cid: bool = True,
) -> None:
    """Send ``make(cid, txid)`` datagrams from ``sockets`` sockets (one per source address,
    round robin) as fast as the sockets take them, yielding to the loop every burst."""
    socks = [udp_socket(ATTACK_SOURCES[i % len(ATTACK_SOURCES)]) for i in range(sockets)]
    cids = [0] * len(socks)
    cid_at = [0.0] * len(socks)
    try:
        while c.running():
            for i, s in enumerate(socks):
                now = time.monotonic()
                if need_cid and now - cid_at[i] > 60:
                    cid = await asyncio.to_thread(udp_connect_id, s, port)
                    if cid is None:
                        c.error("connect timeout")
                        continue
                    cids[i], cid_at[i] = cid, now
                for _ in range(32):
                    try:
                        s.sendto(make(cids[i], random.getrandbits(32)), (HOST, port))
                        c.sent += 1
                    except (BlockingIOError, InterruptedError):
                        c.error("send buffer full")
                        break
                    except OSError as exc:
                        c.error(exc)
                        break
                drain(s)
            await asyncio.sleep(0)
    finally:
        for s in socks:
            s.close()


# -- the attacks ----------------------------------------------------------------------------


async def attack_baseline(c: Counter, port: int) -> None:
    await asyncio.sleep(max(0.0, c.deadline - time.monotonic()))


async def attack_http_flood(c: Counter, port: int) -> None:
    rng = random.Random(1)
    torrents = [rng.randbytes(20) for _ in range(10)]
    peers = [peer_id(rng) for _ in range(1000)]

    def make() -> bytes:
        return http_announce(rng.choice(torrents), rng.choice(peers), 6881)

    await asyncio.gather(
        *(http_pipeline_worker(c, ATTACK_SOURCES[i % 8], port, make) for i in range(128))
    )


async def attack_slowloris(c: Counter, port: int, connections: int = 3000) -> None:
    rng = random.Random(2)
    open_now = 0

    async def hold(i: int) -> None:
        nonlocal open_now
        source = ATTACK_SOURCES[i % 8]
        while c.running():
            try:
                reader, writer = await open_from(source, port, timeout=5.0)
            except (TimeoutError, OSError) as exc:
                c.error(exc)
                await asyncio.sleep(0.5)
                continue
            c.sent += 1
            open_now += 1
            try:
                writer.write(b"GET /announce?info_hash=")
                while time.monotonic() < c.deadline:
                    await asyncio.sleep(min(rng.uniform(2.0, 4.0),
                                            max(0.0, c.deadline - time.monotonic())))
                    if writer.is_closing() or reader.at_eof():
                        c.error("closed by the tracker")
                        break
                    writer.write(b"a")
                    await asyncio.wait_for(writer.drain(), 2.0)
            except (TimeoutError, OSError) as exc:
                c.error(exc)
            finally:
                open_now -= 1
                abort(writer)

    async def ramp() -> None:
        tasks = []
        for i in range(connections):
            if not c.running():
                break
            tasks.append(asyncio.create_task(hold(i)))
            if i % 50 == 49:
                await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)

    await ramp()


async def fill_swarm(port: int, info_hash: bytes, peers: int) -> int:
    """Announce ``peers`` distinct peers (started, seeders) into ``info_hash``; how many
    were answered."""
    rng = random.Random(3)
    answered = 0
    reader, writer = await open_from(ATTACK_SOURCES[0], port)
    try:
        for start in range(0, peers, 100):
            batch = [
                http_announce(info_hash, peer_id(rng), 1024 + start + i,
                              "&event=started&numwant=0")
                for i in range(min(100, peers - start))
            ]
            writer.write(b"".join(batch))
            for _ in batch:
                await asyncio.wait_for(read_reply(reader), 10.0)
                answered += 1
    finally:
        abort(writer)
    return answered


async def attack_pipeline_noread(
    c: Counter, port: int, connections: int = 200, per_connection: int = 500
) -> None:
    rng = random.Random(4)

    async def pipeline(i: int) -> None:
        try:
            _, writer = await open_from(ATTACK_SOURCES[i % 8], port, timeout=5.0)
        except (TimeoutError, OSError) as exc:
            c.error(exc)
            return
        try:
            for n in range(per_connection):
                if not c.running():
                    break
                writer.write(http_announce(BIG_SWARM, peer_id(rng), 7000 + i,
                                           "&compact=0&numwant=200"))
                c.sent += 1
                if n % 20 == 19:
                    # Blocks once the tracker stops reading: that is the point.
                    remaining = c.deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    await asyncio.wait_for(writer.drain(), remaining)
            await asyncio.sleep(max(0.0, c.deadline - time.monotonic()))  # never read
        except (TimeoutError, OSError) as exc:
            if time.monotonic() < c.deadline:
                c.error(exc)
        finally:
            abort(writer)

    await asyncio.gather(*(pipeline(i) for i in range(connections)))


async def attack_udp_options(c: Counter, port: int) -> None:
    size = 65507  # the largest UDP payload over IPv4
    body = _UDP_ANNOUNCE.pack(b"\x66" * 20, b"-SK0001-optionsoptio", 0, 1, 0, 0, 0, 0, -1, 1)

    def make(cid: int, txid: int) -> bytes:
        head = _UDP_HEADER.pack(0x1234_5678_9ABC_DEF0, 1, txid) + body
        return head + b"\x01" * (size - len(head))

    await udp_blast(c, port, make, need_cid=False)


async def attack_unique_torrents(c: Counter, port: int) -> None:
    rng = random.Random(5)

    def make_http() -> bytes:
        return http_announce(rng.randbytes(20), peer_id(rng), 6881, "&event=started")

    def make_udp(cid: int, txid: int) -> bytes:
        return udp_announce(cid, txid, rng.randbytes(20), peer_id(rng), 2)

    await asyncio.gather(
        udp_blast(c, port, make_udp),
        *(http_pipeline_worker(c, ATTACK_SOURCES[i % 8], port, make_http) for i in range(32)),
    )


async def attack_churn(c: Counter, port: int) -> None:
    rng = random.Random(6)
    torrents = [rng.randbytes(20) for _ in range(4)]
    pending: list[bytes] = []
    udp_pending: list[tuple[bytes, bytes]] = []

    def make_http() -> bytes:
        if pending:
            return pending.pop()
        info_hash, pid = rng.choice(torrents), peer_id(rng)
        pending.append(http_announce(info_hash, pid, 6881, "&event=stopped"))
        return http_announce(info_hash, pid, 6881, "&event=started")

    def make_udp(cid: int, txid: int) -> bytes:
        if udp_pending:
            info_hash, pid = udp_pending.pop()
            return udp_announce(cid, txid, info_hash, pid, 3)
        info_hash, pid = rng.choice(torrents), peer_id(rng)
        udp_pending.append((info_hash, pid))
        return udp_announce(cid, txid, info_hash, pid, 2)

    await asyncio.gather(
        udp_blast(c, port, make_udp),
        *(http_pipeline_worker(c, ATTACK_SOURCES[i % 8], port, make_http) for i in range(32)),
    )


async def attack_connect_flood(c: Counter, port: int) -> None:
    def make(cid: int, txid: int) -> bytes:
        return _UDP_HEADER.pack(PROTOCOL_ID, 0, txid)

    await udp_blast(c, port, make, sockets=512, need_cid=False)


ATTACK_FUNCTIONS: dict[str, Callable[[Counter, int], Awaitable[None]]] = {
    "baseline": attack_baseline,
    "http-flood": attack_http_flood,
    "slowloris": attack_slowloris,
    "pipeline-noread": attack_pipeline_noread,
    "udp-options": attack_udp_options,
    "unique-torrents": attack_unique_torrents,
    "churn": attack_churn,
    "connect-flood": attack_connect_flood,
}
# Most requests an attack may send however fast it goes (the time bound usually ends it).
MAX_SENT = 50_000_000


def attacker_main(name: str, port: int, seconds: float, ready: Any, results: Any) -> None:
    """The attacker process: wait for the start signal, attack, report."""
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us

    async def run() -> dict[str, Any]:
        ready.wait(30)
        c = Counter(time.monotonic() + seconds, MAX_SENT)
        started = time.monotonic()
        try:
            await asyncio.wait_for(ATTACK_FUNCTIONS[name](c, port), seconds + 10)
        except TimeoutError:
            c.error("attack overran its time")
        return {"sent": c.sent, "errors": c.errors,
                "elapsed_s": round(time.monotonic() - started, 2)}

    results.put(("attacker", asyncio.run(run())))


# -- the normal client ----------------------------------------------------------------------


@dataclass
class NormalStats:
    sent: int = 0
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, asyncio.Future[bytes]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 8:
            fut = self.waiting.pop(int.from_bytes(data[4:8], "big"), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def ask(self, data: bytes, txid: int) -> bytes:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[txid] = fut
        assert self.transport is not None
        self.transport.sendto(data)
        try:
            return await fut
        finally:
            self.waiting.pop(txid, None)


async def normal_client(port: int, seconds: float, rate: float) -> dict[str, Any]:
    """Steady announces from 127.0.0.1 at ``rate`` a second, alternating HTTP and UDP."""
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    torrents = [rng.randbytes(20) for _ in range(20)]
    peers = [peer_id(rng) for _ in range(200)]
    udp_peers = [peer_id(rng) for _ in range(200)]  # a peer is one address: not the HTTP ones
    http_stats, udp_stats = NormalStats(), NormalStats()
    _, client = await loop.create_datagram_endpoint(_UdpClient, remote_addr=(HOST, port))
    cid: list[Any] = [None, 0.0]

    async def one_http(i: int) -> None:
        http_stats.sent += 1
        t0 = time.perf_counter()
        writer = None
        try:
            async with asyncio.timeout(NORMAL_TIMEOUT):
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(http_announce(torrents[i % 20], peers[i % 200], 20000 + i % 200,
                                           "&numwant=50", close=True))
                body = await read_reply(reader)
            if not body.startswith(b"d") or b"failure reason" in body:
                http_stats.fail("bad reply: " + body[:60].decode("latin-1"))
                return
            http_stats.ok += 1
            http_stats.latencies_ms.append((time.perf_counter() - t0) * 1000)
        except TimeoutError:
            http_stats.fail("timeout")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            http_stats.fail(type(exc).__name__)
        finally:
            if writer is not None:
                abort(writer)

    async def one_udp(i: int) -> None:
        udp_stats.sent += 1
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(NORMAL_TIMEOUT):
                if cid[0] is None or time.monotonic() - cid[1] > 60:
                    txid = rng.getrandbits(32)
                    reply = await client.ask(_UDP_HEADER.pack(PROTOCOL_ID, 0, txid), txid)
                    if len(reply) != 16 or reply[:4] != b"\0\0\0\0":
                        udp_stats.fail("bad connect reply")
                        return
                    cid[0], cid[1] = int.from_bytes(reply[8:16], "big"), time.monotonic()
                txid = rng.getrandbits(32)
                reply = await client.ask(
                    udp_announce(cid[0], txid, torrents[i % 20], udp_peers[i % 200]), txid
                )
            if reply[:4] != b"\0\0\0\1":
                udp_stats.fail("error reply: " + reply[8:].decode("utf-8", "replace")[:60])
                cid[0] = None
                return
            udp_stats.ok += 1
            udp_stats.latencies_ms.append((time.perf_counter() - t0) * 1000)
        except TimeoutError:
            udp_stats.fail("timeout")
        except OSError as exc:
            udp_stats.fail(type(exc).__name__)

    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    interval = 1.0 / rate
    i = 0
    while i < int(seconds * rate) + 1:
        due = start + i * interval
        now = time.monotonic()
        if now >= start + seconds:
            break
        if due > now:
            await asyncio.sleep(due - now)
        task = loop.create_task(one_http(i // 2) if i % 2 == 0 else one_udp(i // 2))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=NORMAL_TIMEOUT + 1)
    client.transport.close()  # type: ignore[union-attr]
    return {
        "http": http_stats.__dict__,
        "udp": udp_stats.__dict__,
    }


def normal_main(port: int, seconds: float, rate: float, ready: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ready.wait(30)
    results.put(("normal", asyncio.run(normal_client(port, seconds, rate))))


# -- the tracker ----------------------------------------------------------------------------


@dataclass
class Tracker:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def storage_settings() -> list[str]:
    """``storage.persist=false`` when this Shoal has a [storage] section, else nothing."""
    out = subprocess.run(
        [sys.executable, "-m", "shoal", "print-config"], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=30, check=False,
    ).stdout
    return ["storage.persist=false"] if "[storage]" in out else []


@contextlib.contextmanager
def tracker(workdir: Path, extra: list[str]) -> Iterator[Tracker]:
    port, admin_port = free_port(), free_port()
    while admin_port == port:
        admin_port = free_port()
    cmd = [sys.executable, "-m", "shoal", "serve", "--host", HOST, "--http-port", str(port),
           "--udp-port", str(port), "--set", f"admin.port={admin_port}",
           "--log-level", "WARNING"]
    for setting in extra:
        cmd += ["--set", setting]
    log_path = workdir / f"tracker-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    t = Tracker(process, port, admin_port, log_path)
    try:
        deadline = time.monotonic() + 30
        while probe_http(port, PROBE_HASH) is not None:
            if not t.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"Shoal did not start:\n{t.log_tail()}")
            time.sleep(0.1)
        yield t
    finally:
        t.stop()


ALIVE_WITHIN = 10.0
RECOVERY_LIMIT = 60.0


def recovery_seconds(t: Tracker, limit: float = RECOVERY_LIMIT) -> float | None:
    """Seconds until the process answers an HTTP and a UDP announce probe once the attack
    is over; None when it exited or did not answer within ``limit``."""
    start = time.monotonic()
    while time.monotonic() < start + limit:
        if not t.alive():
            return None
        if probe_http(t.port, PROBE_HASH) is None and probe_udp(t.port):
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_attack(name: str, seconds: float, rate: float, workdir: Path,
               extra: list[str]) -> dict[str, Any]:
    """One attack against a fresh tracker; the row of the table, as a dict."""
    ctx = multiprocessing.get_context("spawn")
    row: dict[str, Any] = {"attack": name, "seconds": seconds}
    with tracker(workdir, extra) as t:
        if name == "pipeline-noread":
            row["swarm_filled"] = asyncio.run(fill_swarm(t.port, BIG_SWARM, 2000))
        ready, results = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=attacker_main, args=(name, t.port, seconds, ready, results)),
            ctx.Process(target=normal_main, args=(t.port, seconds, rate, ready, results)),
        ]
        try:
            for p in procs:
                p.start()
            time.sleep(0.5)  # let both processes import before the clock starts
            ready.set()
            got: dict[str, Any] = {}
            peak_kib = 0
            deadline = time.monotonic() + seconds + 30
            while len(got) < 2 and time.monotonic() < deadline:
                if t.alive():
                    peak_kib = max(peak_kib, memory_kib(t.process.pid)["VmRSS"])
                with contextlib.suppress(Exception):
                    who, data = results.get(timeout=0.5)
                    got[who] = data
        finally:
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)
                if p.is_alive():
                    p.kill()
                    p.join()
        recovery = recovery_seconds(t)
        row["recovery_s"] = None if recovery is None else round(recovery, 1)
        row["alive_after"] = recovery is not None and recovery <= ALIVE_WITHIN
        if not t.alive():
            row["exit_code"] = t.process.returncode
            row["log_tail"] = t.log_tail()
    attacker = got.get("attacker", {})
    normal = got.get("normal", {})
    row["attacker_sent"] = attacker.get("sent")
    row["attacker_errors"] = attacker.get("errors")
    row["peak_rss_mib"] = round(peak_kib / 1024, 1)
    http, udp = normal.get("http", {}), normal.get("udp", {})
    sent = http.get("sent", 0) + udp.get("sent", 0)
    ok = http.get("ok", 0) + udp.get("ok", 0)
    row["normal_sent"] = sent
    row["normal_success"] = round(ok / sent, 4) if sent else None
    for proto, stats in (("http", http), ("udp", udp)):
        n = stats.get("sent", 0)
        row[f"normal_{proto}_success"] = round(stats.get("ok", 0) / n, 4) if n else None
        p99 = percentile(stats.get("latencies_ms", []), 0.99)
        row[f"normal_{proto}_p99_ms"] = None if p99 is None else round(p99, 1)
        row[f"normal_{proto}_failures"] = stats.get("failures", {})
    p99 = percentile(http.get("latencies_ms", []) + udp.get("latencies_ms", []), 0.99)
    row["normal_p99_ms"] = None if p99 is None else round(p99, 1)
    return row


def _fmt(value: Any, pattern: str = "{}") -> str:
    return "-" if value is None else pattern.format(value)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| attack | attacker sent | normal success (HTTP / UDP) | normal p99 ms (HTTP / UDP) "
        "| peak RSS MiB | alive after |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        success = (f"{_fmt(r['normal_success'], '{:.1%}')} "
                   f"({_fmt(r['normal_http_success'], '{:.0%}')} / "
                   f"{_fmt(r['normal_udp_success'], '{:.0%}')})")
        p99 = (f"{_fmt(r['normal_p99_ms'])} ({_fmt(r['normal_http_p99_ms'])} / "
               f"{_fmt(r['normal_udp_p99_ms'])})")
        if r["alive_after"]:
            alive = "yes"
        elif "exit_code" in r:
            alive = f"NO: exited ({r['exit_code']})"
        elif r["recovery_s"] is not None:
            alive = f"NO: answered again after {r['recovery_s']:g} s"
        else:
            alive = f"NO: no answer for {RECOVERY_LIMIT:g} s"
        lines.append(
            f"| {r['attack']} | {_fmt(r['attacker_sent'], '{:,}')} | {success} | {p99} "
            f"| {r['peak_rss_mib']} | {alive} |"
        )
    return "\n".join(lines)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=False).stdout.strip()
    return out or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="per attack (15)")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated, from: {', '.join(ATTACKS)}")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="normal announces a second, half HTTP, half UDP (200)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.attacks.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown or not names:
        parser.error(f"unknown attack(s) {unknown}; choose from {', '.join(ATTACKS)}")
    if not 0 < args.seconds <= 600 or not 0 < args.rate <= 10_000:
        parser.error("--seconds must be in (0, 600] and --rate in (0, 10000]")
    extra = storage_settings()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-soak-") as tmp:
        for name in names:
            print(f"soak: {name} for {args.seconds:g} s ...", file=sys.stderr, flush=True)
            rows.append(run_attack(name, args.seconds, args.rate, Path(tmp), extra))
    commit = git_commit()
    header = (
        f"Soak (`python -m bench.soak --seconds {args.seconds:g}`), Shoal {commit}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"normal client {args.rate:g} announces/s (half HTTP with a new connection each, "
        f"half UDP), 2 s timeout; p99 over the successful ones.\n"
    )
    text = header + "\n" + table(rows) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text(text)
    record = {
        "kind": "soak",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "seconds": args.seconds,
        "rate": args.rate,
        "rows": rows,
    }
    with open(args.out / "soak.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return 0 if all(r["alive_after"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
