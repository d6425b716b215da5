"""Starting, probing, measuring and stopping the trackers under test.

A target is started on a free port number (the same number for TCP and UDP), pinned to
its own CPU when the machine has more than one, and waited for until an announce gets a
proper answer. CPU time and memory are read from /proc for the tracker's whole process
tree, so a tracker with worker threads or processes is measured in full.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from bench.bencode import bdecode
from bench.private import PrivateAccounts

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROBE_PEER_ID = b"-SB0001-probeprobe00"

TARGET_NAMES = ("shoal", "opentracker", "bittorrent-tracker")
# The reference WebTorrent tracker (npm bittorrent-tracker's Server, run by
# js/bench-tracker.mjs under Node): measured in the ws mode only, side by side with Shoal.
NODE_TARGET = "bittorrent-tracker"
JS_DIR = REPO_ROOT / "js"
# Shoal with its swarms in a redis-server of its own (``storage.peers = "redis"``); not run
# unless named in --targets. Redis shares the tracker's CPU (the generator busy-polls the
# other one) and its CPU time is reported apart.
REDIS_TARGET = "shoal-redis"
# Shoal in private mode (``tracker.mode = "private"``), otherwise as the "shoal" target: the
# workload's users and torrents are imported through the REST API before the fill, and
# every request carries a passkey. Not run unless named in --targets.
PRIVATE_TARGET = "shoal-private"
# Shoal with its compiled data plane off (``tracker.engine = "python"``), otherwise as the
# "shoal" target: the native and pure-Python paths side by side in one run.
PYTHON_TARGET = "shoal-python"
# Shoal with its compiled data plane required (``tracker.engine = "native"``: it will not
# start without it), otherwise as the "shoal" target (whose ``auto`` falls back to Python
# silently when the extension is not built): for figures that must be the compiled path's.
NATIVE_TARGET = "shoal-native"
# Source tree of the "shoal-base" target (not SHOAL_*: those are settings).
BASE_ENV = "BENCH_SHOAL_BASE"
# The CPUs this process may use when first imported, before the generator pins itself.
_CPUS = sorted(os.sched_getaffinity(0))


class TargetError(RuntimeError):
    """A tracker could not be started or did not answer."""


def free_port() -> int:
    """A port number free for both TCP and UDP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise TargetError("no free port")


def tracker_cpu() -> int | None:
    """The CPU the tracker is pinned to (1), or None on a one-CPU machine."""
    return _CPUS[1] if len(_CPUS) > 1 else None


def generator_cpu() -> int | None:
    """The CPU the load generator is pinned to (0), or None on a one-CPU machine."""
    return _CPUS[0] if len(_CPUS) > 1 else None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree = [pid]
    for p in tree:
        tree.extend(children.get(p, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used by ``pid``'s process tree (utime + stime)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, summed over ``pid``'s process tree."""
    out = {"VmRSS": 0, "VmHWM": 0}
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in out:
                        out[key] += int(value.split()[0])
        except OSError:
            continue
    return out


def cpus_busy_seconds(cpus: list[int | None]) -> float:
    """Seconds CPUs ``cpus`` have spent busy so far, whoever ran on them (from /proc/stat:
    user, nice, system, irq, softirq and steal time); 0 when it cannot be read."""
    wanted = {f"cpu{c}" for c in cpus if c is not None}
    total = 0
    try:
        with open("/proc/stat") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in wanted:
                    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
                        int, fields[1:9]
                    )
                    total += user + nice + system + irq + softirq + steal
    except (OSError, ValueError):
        return 0.0
    return total / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU seconds used so far by this (the generator's) process."""
    t = os.times()
    return t.user + t.system


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """One plain GET on 127.0.0.1, returning status and body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def probe_http(port: int, info_hash: bytes, prefix: str = "") -> str | None:
    """None when an announce (event=stopped, so nothing is left behind) for ``info_hash``
    gets a well-formed success; otherwise a reason. ``prefix`` goes before ``/announce``
    (``/<passkey>`` for a private tracker)."""
    query = urllib.parse.urlencode(
        {
            "info_hash": info_hash,
            "peer_id": PROBE_PEER_ID,
            "port": 1,
            "uploaded": 0,
            "downloaded": 0,
            "left": 0,
            "event": "stopped",
            "numwant": 0,
            "compact": 1,
        }
    )
    try:
        status, body = http_get(port, prefix + "/announce?" + query)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}"
    try:
        reply = bdecode(body)
    except ValueError as exc:
        return f"bad bencode: {exc}"
    if not isinstance(reply, dict):
        return "reply is not a dictionary"
    failure = reply.get(b"failure reason")
    if failure is not None:
        return f"failure reason: {failure!r}"
    return None


def probe_udp(port: int, timeout: float = 0.5) -> bool:
    """True when a BEP 15 connect request is answered properly."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        txid = int.from_bytes(os.urandom(4))
        try:
            s.sendto(struct.pack("!QII", 0x41727101980, 0, txid), (HOST, port))
            data = s.recv(64)
        except OSError:
            return False
    return len(data) == 16 and struct.unpack("!II", data[:8]) == (0, txid)


def scrape_counts(port: int, info_hash: bytes) -> tuple[int, int] | None:
    """(complete, incomplete) of one torrent by HTTP scrape, or None."""
    query = urllib.parse.urlencode({"info_hash": info_hash})
    try:
        status, body = http_get(port, "/scrape?" + query)
        reply = bdecode(body)
    except (OSError, ValueError):
        return None
    if status != 200 or not isinstance(reply, dict):
        return None
    files = reply.get(b"files")
    if not isinstance(files, dict):
        return None
    entry = files.get(info_hash)
    if not isinstance(entry, dict):
        return (0, 0)
    complete, incomplete = entry.get(b"complete", 0), entry.get(b"incomplete", 0)
    if isinstance(complete, int) and isinstance(incomplete, int):
        return complete, incomplete
    return None


@dataclass
class RunningTarget:
    """A started tracker process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    udp: bool = False
    notes: list[str] = field(default_factory=list)
    store: subprocess.Popen[bytes] | None = None  # the redis-server of shoal-redis
    store_port: int = 0

    def store_cpu_seconds(self) -> float | None:
        return cpu_seconds(self.store.pid) if self.store is not None else None

    def store_calls(self) -> tuple[int, int] | None:
        """(script calls, all commands, scripts' own included) Redis has run so far."""
        if self.store is None:
            return None
        return redis_calls(self.store_port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (the tracker, then its Redis); remove the work
        directory."""
        for process in (self.process, self.store):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def redis_command(port: int, line: str) -> str:
    """One inline command to the redis-server on ``port``; its reply as text."""
    with socket.create_connection((HOST, port), timeout=2) as sock:
        sock.sendall(line.encode() + b"\r\n")
        data = sock.recv(65536)
        if data.startswith(b"$"):
            length = int(data[1 : data.index(b"\r\n")])
            while len(data) < data.index(b"\r\n") + 4 + length:
                more = sock.recv(65536)
                if not more:
                    break
                data += more
    return data.decode(errors="replace")


def redis_calls(port: int) -> tuple[int, int]:
    """(EVALSHA calls, commands of every kind) from INFO commandstats."""
    scripts = total = 0
    for line in redis_command(port, "INFO commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            calls = int(rest.split(",")[0].split("=")[1])
            total += calls
            if name in ("cmdstat_evalsha", "cmdstat_eval"):
                scripts += calls
    return scripts, total


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server with no persistence on a free loopback port, answering PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise TargetError("redis-server is not installed (Debian's redis-server package)")
    port = free_port()
    log = open(workdir / "redis.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        _pinned([binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly",
                 "no", "--dir", str(workdir)]),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if redis_command(port, "PING").startswith("+PONG"):
                return process, port
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise TargetError(f"redis-server did not start on port {port}")


def _pinned(cmd: list[str]) -> list[str]:
    cpu = tracker_cpu()
    taskset = shutil.which("taskset")
    if cpu is not None and taskset:
        return [taskset, "-c", str(cpu), *cmd]
    return cmd


def _pin_after_start(pid: int) -> None:
    cpu = tracker_cpu()
    if cpu is None or shutil.which("taskset"):
        return
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), {cpu})


def opentracker_available() -> bool:
    """True when an ``opentracker`` binary is on the PATH."""
    return shutil.which("opentracker") is not None


def node_binary() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


def node_tracker_available() -> bool:
    """True when Node and js/'s bittorrent-tracker (scripts/install-js-deps.sh) are there."""
    return node_binary() is not None and (
        JS_DIR / "node_modules" / "bittorrent-tracker" / "package.json"
    ).is_file()


def node_tracker_version() -> str:
    """``bittorrent-tracker <version> on Node <version>``, or "" when it is missing."""
    node = node_binary()
    if node is None or not node_tracker_available():
        return ""
    try:
        package = json.loads(
            (JS_DIR / "node_modules" / "bittorrent-tracker" / "package.json").read_text()
        )
        found = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10,
                               check=False)
    except (OSError, ValueError, subprocess.SubprocessError):
        return ""
    return f"{package.get('version', '?')} on Node {found.stdout.strip()}"


def shoal_command(
    port: int,
    extra_settings: list[str],
    persist_setting: bool = True,
    admin_port: int | None = None,
) -> list[str]:
    """The command line that serves Shoal on ``port`` (HTTP and UDP); without
    ``persist_setting`` it names no ``[storage]`` key (for a Shoal older than it); with
    ``admin_port`` the admin listener is on, on that port (for the REST API)."""
    cmd = [
        sys.executable,
        "-m",
        "shoal",
        "serve",
        "--host",
        HOST,
        "--http-port",
        str(port),
        "--udp-port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    # The admin server (stats, metrics) listens on a fixed port of its own: off, so several
    # instances can run and the tracker does only tracker work.
    # Nothing written to disk either: the comparison is of the announce path.
    storage = ["storage.persist=false"] if persist_setting else []
    admin = (
        ["admin.enabled=false"]
        if admin_port is None
        else ["admin.enabled=true", f"admin.host={HOST}", f"admin.port={admin_port}"]
    )
    for setting in [*admin, *storage, *extra_settings]:
        cmd += ["--set", setting]
    return cmd


def private_settings(workdir: Path) -> list[str]:
    """What the shoal-private target adds to the shoal target's settings: private mode,
    with its accounting in SQLite in the target's work directory (the embedded default,
    a file on disk; ``storage.persist = false`` would put it in memory)."""
    return ["tracker.mode=private", f"database.url=sqlite:///{workdir / 'accounts.sqlite3'}"]


def api_request(
    port: int, method: str, path: str, token: str, body: bytes = b"", timeout: float = 120.0
) -> tuple[int, bytes]:
    """One request to the REST API on the admin listener at 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        if body:
            headers["Content-Type"] = "application/x-ndjson"
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def import_accounts(
    target: RunningTarget, admin_port: int, token: str, accounts: PrivateAccounts,
    deadline: float,
) -> None:
    """Wait for the REST API, then import ``accounts``' users and torrents in one request."""
    body = accounts.import_body()
    while True:
        if not target.alive():
            raise TargetError(f"{target.name} exited with {target.process.returncode}")
        try:
            status, reply = api_request(admin_port, "POST", "/api/v1/import", token, body)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise TargetError(f"{target.name}: no REST API on port {admin_port}") from None
            time.sleep(0.1)
        except OSError as exc:
            raise TargetError(f"{target.name}: import failed: {exc}") from exc
    want = {"users": len(accounts.passkeys), "torrents": len(accounts.info_hashes)}
    try:
        got = json.loads(reply)
    except ValueError:
        got = None
    if status != 200 or got != want:
        text = reply[:300].decode(errors="replace")
        raise TargetError(f"{target.name}: import answered {status}: {text} (wanted {want})")
    target.notes.append(f"imported {want['users']:,} users and {want['torrents']:,} torrents")


def opentracker_command(port: int, workdir: Path, info_hashes: list[bytes]) -> list[str]:
    """Write opentracker's whitelist and config into ``workdir``; return its command line.

    Debian builds opentracker in whitelist mode: it refuses every torrent not listed. It
    chroots into ``tracker.rootdir`` and drops to an unprivileged user, so the whitelist
    lives in that directory and is named relative to it.
    """
    (workdir / "whitelist.txt").write_text("".join(h.hex() + "\n" for h in info_hashes))
    (workdir / "opentracker.conf").write_text(
        f"listen.tcp {HOST}:{port}\n"
        f"listen.udp {HOST}:{port}\n"
        "access.whitelist /whitelist.txt\n"
        f"tracker.rootdir {workdir}\n"
    )
    workdir.chmod(0o755)
    for name in ("whitelist.txt", "opentracker.conf"):
        (workdir / name).chmod(0o644)
    binary = shutil.which("opentracker") or "opentracker"
    return [binary, "-f", str(workdir / "opentracker.conf")]


def start_target(
    name: str,
    info_hashes: list[bytes],
    *,
    shoal_settings: list[str] | None = None,
    ready_timeout: float = 60.0,
    want_udp: bool = True,
    accounts: PrivateAccounts | None = None,
) -> RunningTarget:
    """Start tracker ``name`` knowing ``info_hashes`` and wait until it answers announces
    for them (and, if ``want_udp``, until its UDP side answers, for at most a few seconds:
    ``udp`` tells whether it did). The shoal-private target needs ``accounts``: they are
    imported before it is probed, with the first user's passkey."""
    if not info_hashes:
        raise TargetError("no info hashes")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    store: tuple[subprocess.Popen[bytes], int] | None = None
    env: dict[str, str] | None = None
    admin_port = 0
    prefix = ""
    if name == "shoal":
        cmd = shoal_command(port, shoal_settings or [])
        cwd = REPO_ROOT
    elif name == PYTHON_TARGET:
        cmd = shoal_command(port, ["tracker.engine=python", *(shoal_settings or [])])
        cwd = REPO_ROOT
    elif name == NATIVE_TARGET:
        cmd = shoal_command(port, ["tracker.engine=native", *(shoal_settings or [])])
        cwd = REPO_ROOT
    elif name == REDIS_TARGET:
        store = start_redis(workdir)
        redis = ["storage.peers=redis", f"storage.redis_url=redis://{HOST}:{store[1]}/0"]
        cmd = shoal_command(port, [*redis, *(shoal_settings or [])])
        cwd = REPO_ROOT
    elif name == PRIVATE_TARGET:
        if accounts is None or not accounts.passkeys:
            raise TargetError(f"{name} needs the workload's users")
        admin_port = free_port()
        # The token goes by the environment, not the command line (ps shows that).
        env = {**os.environ, "SHOAL_ADMIN_API_TOKEN": secrets.token_urlsafe(24)}
        settings = [*private_settings(workdir), *(shoal_settings or [])]
        cmd = shoal_command(port, settings, admin_port=admin_port)
        cwd = REPO_ROOT
        prefix = "/" + accounts.passkeys[0]
    elif name == "shoal-base":
        # Shoal from another source tree (a worktree of an earlier commit), to measure a
        # change side by side: `git worktree add /tmp/base COMMIT`, then
        # BENCH_SHOAL_BASE=/tmp/base python -m bench --targets shoal,shoal-base.
        base = os.environ.get(BASE_ENV)
        if not base:
            raise TargetError(f"shoal-base needs {BASE_ENV}=<source tree of the baseline>")
        cmd = shoal_command(port, shoal_settings or [], persist_setting=False)
        cwd = Path(base)
    elif name == NODE_TARGET:
        node = node_binary()
        if node is None or not node_tracker_available():
            raise TargetError(
                "Node.js or js/node_modules/bittorrent-tracker is missing "
                "(bash scripts/install-bench-deps.sh)"
            )
        cmd = [node, str(JS_DIR / "bench-tracker.mjs"), str(port)]
        cwd = JS_DIR
    elif name == "opentracker":
        if not opentracker_available():
            raise TargetError("opentracker is not installed (scripts/install-bench-deps.sh)")
        cmd = opentracker_command(port, workdir, info_hashes)
        cwd = workdir
    else:
        raise TargetError(f"unknown target {name!r}")
    log_path = workdir / "tracker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            _pinned(cmd), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env,
        )
    target = RunningTarget(name, port, process, workdir, log_path)
    if store is not None:
        target.store, target.store_port = store
    _pin_after_start(process.pid)
    deadline = time.monotonic() + ready_timeout
    if accounts is not None and env is not None:
        try:
            import_accounts(target, admin_port, env["SHOAL_ADMIN_API_TOKEN"], accounts, deadline)
        except TargetError as exc:
            tail = target.log_tail()
            target.stop()
            raise TargetError(f"{exc}\n{tail}") from exc
    reason: str | None = "not probed"
    while time.monotonic() < deadline:
        if not target.alive():
            tail = target.log_tail()
            target.stop()
            raise TargetError(f"{name} exited with {process.returncode}:\n{tail}")
        reason = probe_http(port, info_hashes[0], prefix)
        if reason is None:
            break
        time.sleep(0.1)
    else:
        tail = target.log_tail()
        target.stop()
        raise TargetError(f"{name} did not answer in {ready_timeout:.0f} s ({reason}):\n{tail}")
    if want_udp:
        udp_deadline = time.monotonic() + 3.0
        while time.monotonic() < udp_deadline:
            if probe_udp(port):
                target.udp = True
                break
    return target
