"""Drive real BitTorrent clients (Transmission, aria2) and a Shoal tracker process.

Everything here talks to loopback addresses only. Each process is started in its own
session (process group) and registered with a `ProcessRegistry`, so a test can stop every
process it started, even when it fails or times out.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.ports import free_port, ipv6_loopback

REPO_ROOT = Path(__file__).resolve().parents[2]

# Which Debian package ships each client binary the tests run.
DEBIAN_PACKAGE = {
    "aria2c": "aria2",
    "transmission-daemon": "transmission-daemon",
    "transmission-remote": "transmission-cli",
}

# ---------------------------------------------------------------------------
# bencode (BEP 3)
# ---------------------------------------------------------------------------

Bencodable = int | bytes | str | list[Any] | dict[Any, Any]


def bencode(value: Bencodable) -> bytes:
    """Encode ints, byte/text strings, lists and dicts (keys sorted as raw bytes)."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode one complete bencoded value; dict keys stay bytes."""
    value, end = _bdecode_at(data, 0)
    if end != len(data):
        raise ValueError(f"trailing bytes after bencoded value at offset {end}")
    return value


def _bdecode_at(data: bytes, pos: int) -> tuple[Any, int]:
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1 : end]), end + 1
    if lead == b"l":
        items: list[Any] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _bdecode_at(data, pos)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        result: dict[bytes, Any] = {}
        pos += 1
        while data[pos : pos + 1] != b"e":
            key, pos = _bdecode_at(data, pos)
            if not isinstance(key, bytes):
                raise ValueError("dict key is not a string")
            result[key], pos = _bdecode_at(data, pos)
        return result, pos + 1
    if lead.isdigit():
        colon = data.index(b":", pos)
        length = int(data[pos:colon])
        start = colon + 1
        if start + length > len(data):
            raise ValueError("string runs past the end")
        return data[start : start + length], start + length
    raise ValueError(f"bad bencode at offset {pos}: {data[pos : pos + 10]!r}")


# ---------------------------------------------------------------------------
# payload and .torrent
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Torrent:
    """A single-file torrent written to disk, and what the tests check against."""

    path: Path
    info_hash: bytes
    name: str
    sha256: str
    size: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_payload(path: Path, size: int) -> None:
    """Write `size` random bytes to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 1 << 20))
            f.write(chunk)
            remaining -= len(chunk)


def make_torrent(
    data_file: Path, announce: str, torrent_path: Path, piece_length: int = 256 * 1024,
    *, private: bool = False,
) -> Torrent:
    """Write a single-file .torrent whose only tracker is `announce` (BEP 27 `private`
    flag set when asked)."""
    pieces = bytearray()
    with data_file.open("rb") as f:
        for piece in iter(lambda: f.read(piece_length), b""):
            pieces += hashlib.sha1(piece).digest()
    info: dict[str, Bencodable] = {
        "length": data_file.stat().st_size,
        "name": data_file.name,
        "piece length": piece_length,
        "pieces": bytes(pieces),
    }
    if private:
        info["private"] = 1
    meta: dict[str, Bencodable] = {
        "announce": announce,
        "created by": "shoal e2e tests",
        "creation date": int(time.time()),
        "info": info,
    }
    torrent_path.write_bytes(bencode(meta))
    return Torrent(
        path=torrent_path,
        info_hash=hashlib.sha1(bencode(info)).digest(),
        name=data_file.name,
        sha256=sha256_of(data_file),
        size=data_file.stat().st_size,
    )


# ---------------------------------------------------------------------------
# ports, waiting, logs
# ---------------------------------------------------------------------------

def ipv6_loopback_available() -> bool:
    """Whether sockets can bind to ::1 here (some containers have no IPv6 at all)."""
    return ipv6_loopback()


def tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and the last state."""


class ProcessDied(AssertionError):
    """A process the test needs has exited; waiting any longer is pointless."""


def wait_until(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    interval: float = 0.5,
    state: Callable[[], str] | None = None,
) -> Any:
    """Call `check` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
        except ProcessDied:
            raise
        except Exception as exc:  # the condition may not be checkable yet
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else ""
            if state is not None:
                detail += f"; last state: {state()}"
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def grep(path: Path, needles: Sequence[str], limit: int = 40) -> str:
    """The last `limit` lines of a file containing any of `needles` (case-insensitive)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    lowered = [n.lower() for n in needles]
    hits = [line for line in text.splitlines() if any(n in line.lower() for n in lowered)]
    return "\n".join(hits[-limit:])


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the process (SIGTERM), then SIGKILL its group if it does not exit in time.

        The polite signal goes to the group leader alone: `timeout --foreground` passes it
        on to the client exactly once (aria2 takes a second SIGINT as an emergency stop).
        """
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Kill leftovers in the group (the leader may be gone while children live on).
        _signal_group(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# No process outlives this many seconds, even if the test run itself is killed and never
# gets to stop it (longer than any test's own time limit).
PROCESS_LIFETIME = 900


def _with_lifetime(argv: Sequence[str]) -> list[str]:
    if shutil.which("timeout") is None:
        return list(argv)
    return ["timeout", "--foreground", "--kill-after=10", str(PROCESS_LIFETIME), *argv]


class ProcessRegistry:
    """Every process a test started, so that all of them are stopped at the end."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []
        self.diagnostics: list[tuple[str, Callable[[], str]]] = []

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                _with_lifetime(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        proc = ManagedProcess(name, popen, log)
        self.processes.append(proc)
        self.diagnostics.append((f"{name} output (tail of {log})", lambda: tail(log)))
        return proc

    def add_diagnostic(self, title: str, produce: Callable[[], str]) -> None:
        self.diagnostics.append((title, produce))

    def report(self) -> list[tuple[str, str]]:
        out = []
        for title, produce in self.diagnostics:
            try:
                text = produce()
            except Exception as exc:
                text = f"<diagnostic failed: {exc!r}>"
            out.append((title, text))
        return out

    def stop_all(self) -> None:
        # Clients first, so that their `stopped` announces can still reach the tracker.
        for proc in reversed(self.processes):
            proc.stop()


def require_running(proc: ManagedProcess) -> None:
    if not proc.running():
        raise ProcessDied(
            f"{proc.name} exited with status {proc.popen.returncode}:\n{tail(proc.log)}"
        )


# ---------------------------------------------------------------------------
# the tracker
# ---------------------------------------------------------------------------


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def tracker_command() -> list[str]:
    """`python -m shoal`, or the command in SHOAL_E2E_TRACKER_CMD (to test the tests)."""
    override = os.environ.get("SHOAL_E2E_TRACKER_CMD")
    if override:
        return override.split()
    return [sys.executable, "-m", "shoal"]


class Tracker:
    """A `shoal serve` process on one free port (TCP for HTTP, UDP for BEP 15)."""

    def __init__(self, registry: ProcessRegistry, workdir: Path, hosts: Sequence[str]) -> None:
        self.registry = registry
        self.hosts = list(hosts)
        self.port = free_port()
        self.admin_port = free_port()
        self.log = workdir / "tracker.log"
        self.proc: ManagedProcess | None = None

    def start(self, settings: Sequence[str] = ()) -> None:
        argv = [*tracker_command(), "serve"]
        for host in self.hosts:
            argv += ["--host", host]
        argv += ["--http-port", str(self.port), "--udp-port", str(self.port)]
        argv += ["--log-level", "INFO"]
        # The admin server's default port is fixed; give each tracker a free one.
        argv += ["--set", f"admin.port={self.admin_port}"]
        argv += ["--set", f"storage.data_dir={self.log.parent / 'data'}"]
        for setting in settings:
            argv += ["--set", setting]
        self.proc = self.registry.spawn("tracker", argv, self.log, cwd=REPO_ROOT)
        self.registry.add_diagnostic("tracker /stats", self.stats)
        proc = self.proc

        # The admin listener (the REST API, /stats) starts after the announce ones: wait
        # for it too, unless a setting turns it off.
        admin = "admin.enabled=false" not in settings

        def ready() -> bool:
            require_running(proc)
            return all(tcp_accepts(host, self.port) for host in self.hosts) and (
                not admin or tcp_accepts("127.0.0.1", self.admin_port))

        wait_until("the tracker to accept TCP connections", ready, timeout=20, interval=0.2)

    def stats(self) -> str:
        """The admin server's /stats page, as text (for failure reports)."""
        url = f"http://127.0.0.1:{self.admin_port}/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read(4000).decode(errors="replace"))

    def http_announce_url(self, host: str) -> str:
        return f"http://{url_host(host)}:{self.port}/announce"

    def udp_announce_url(self, host: str) -> str:
        return f"udp://{url_host(host)}:{self.port}/announce"

    def _get(self, host: str, path: str, query: str) -> dict[bytes, Any]:
        url = f"http://{url_host(host)}:{self.port}{path}?{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
        decoded = bdecode(body)
        if not isinstance(decoded, dict):
            raise AssertionError(f"{path} reply is not a dict: {body!r}")
        if b"failure reason" in decoded:
            raise AssertionError(f"{path} failed: {decoded[b'failure reason']!r}")
        return decoded

    def scrape(self, host: str, info_hash: bytes) -> dict[str, int]:
        """HTTP scrape of one torrent: {"complete", "incomplete", "downloaded"} (0s if absent)."""
        query = "info_hash=" + urllib.parse.quote_from_bytes(info_hash, safe="")
        reply = self._get(host, "/scrape", query)
        files = reply.get(b"files", {})
        entry = files.get(info_hash, {})
        return {
            key: int(entry.get(key.encode(), 0)) for key in ("complete", "incomplete", "downloaded")
        }

    def announce(
        self,
        host: str,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        left: int,
        event: str = "",
    ) -> dict[bytes, Any]:
        """A hand-made compact HTTP announce (the test's own probe peer)."""
        params = [
            ("info_hash", urllib.parse.quote_from_bytes(info_hash, safe="")),
            ("peer_id", urllib.parse.quote_from_bytes(peer_id, safe="")),
            ("port", str(port)),
            ("uploaded", "0"),
            ("downloaded", "0"),
            ("left", str(left)),
            ("compact", "1"),
            ("numwant", "50"),
        ]
        if event:
            params.append(("event", event))
        return self._get(host, "/announce", "&".join(f"{k}={v}" for k, v in params))


def compact_peers(reply: dict[bytes, Any]) -> set[tuple[str, int]]:
    """(ip, port) pairs from the compact `peers` (BEP 23) and `peers6` (BEP 7) strings."""
    found: set[tuple[str, int]] = set()
    for key, width in ((b"peers", 4), (b"peers6", 16)):
        blob = reply.get(key, b"")
        if isinstance(blob, list):  # non-compact reply
            for peer in blob:
                found.add((peer[b"ip"].decode(), int(peer[b"port"])))
            continue
        step = width + 2
        for offset in range(0, len(blob) - step + 1, step):
            ip = str(ipaddress.ip_address(blob[offset : offset + width]))
            (port,) = struct.unpack_from(">H", blob, offset + width)
            found.add((ip, port))
    return found


# ---------------------------------------------------------------------------
# Transmission (transmission-daemon, driven over its RPC)
# ---------------------------------------------------------------------------

TR_STATUS = {0: "stopped", 1: "check-wait", 2: "checking", 3: "download-wait", 4: "downloading",
             5: "seed-wait", 6: "seeding"}  # fmt: skip


class Transmission:
    """transmission-daemon in its own config dir, with DHT, PEX, LPD, uTP and port mapping off."""

    def __init__(self, registry: ProcessRegistry, workdir: Path, family: str) -> None:
        self.registry = registry
        self.workdir = workdir
        self.family = family
        self.host = "::1" if family == "ipv6" else "127.0.0.1"
        self.config_dir = workdir / "config"
        self.download_dir = workdir / "download"
        self.log = workdir / "transmission.log"
        self.rpc_port = free_port()
        self.peer_port = free_port()
        self.session_id = ""
        self.torrent_id: int | None = None
        self.proc: ManagedProcess | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "dht-enabled": False,
            "lpd-enabled": False,
            "pex-enabled": False,
            "utp-enabled": False,
            "port-forwarding-enabled": False,
            "blocklist-enabled": False,
            "peer-port": self.peer_port,
            "peer-port-random-on-start": False,
            # libtransmission binds its tracker requests to a non-default IPv4 bind address,
            # so the IPv4 address is left alone when the tracker is reached over IPv6.
            "bind-address-ipv4": "0.0.0.0" if self.family == "ipv6" else "127.0.0.1",
            "bind-address-ipv6": "::1",
            "rpc-enabled": True,
            "rpc-bind-address": "127.0.0.1",
            "rpc-port": self.rpc_port,
            "rpc-authentication-required": False,
            "rpc-whitelist-enabled": True,
            "rpc-whitelist": "127.0.0.1",
            "rpc-host-whitelist-enabled": False,
            "download-dir": str(self.download_dir),
            "incomplete-dir-enabled": False,
            "rename-partial-files": False,
            "start-added-torrents": True,
            "ratio-limit-enabled": False,
            "idle-seeding-limit-enabled": False,
            "download-queue-enabled": False,
            "seed-queue-enabled": False,
            "queue-stalled-enabled": False,
            "speed-limit-down-enabled": False,
            "speed-limit-up-enabled": False,
            "alt-speed-enabled": False,
            "encryption": 1,
            "message-level": 3,
            "umask": 18,
        }

    def start(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "settings.json").write_text(json.dumps(self.settings(), indent=2))
        argv = [
            "transmission-daemon",
            "--foreground",
            "--config-dir", str(self.config_dir),
            "--port", str(self.rpc_port),
            "--peerport", str(self.peer_port),
            "--no-dht",
            "--no-lpd",
            "--no-portmap",
            "--no-utp",
            "--no-auth",
            "--rpc-bind-address", "127.0.0.1",
            "--download-dir", str(self.download_dir),
            "--no-incomplete-dir",
            "--log-debug",
            "--logfile", str(self.log),
        ]  # fmt: skip
        proc = self.registry.spawn("transmission-daemon", argv, self.workdir / "daemon.out")
        self.proc = proc
        self.registry.add_diagnostic(f"transmission log (tail of {self.log})", self.log_tail)
        self.registry.add_diagnostic("transmission torrent state", self.describe)

        def rpc_up() -> bool:
            require_running(proc)
            self.rpc("session-get")
            return True

        wait_until("transmission-daemon's RPC", rpc_up, timeout=20, interval=0.3)

    def log_tail(self) -> str:
        return (
            "tracker traffic:\n"
            + grep(self.log, ["announce", "scrape", "tracker"], limit=25)
            + "\n--- last lines:\n"
            + tail(self.log, 30)
        )

    def rpc(self, method: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """One JSON-RPC call, renewing the X-Transmission-Session-Id when told to."""
        body = json.dumps({"method": method, "arguments": arguments or {}}).encode()
        url = f"http://127.0.0.1:{self.rpc_port}/transmission/rpc"
        for _ in range(3):
            request = urllib.request.Request(
                url, data=body, headers={"X-Transmission-Session-Id": self.session_id}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    reply = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 409:
                    self.session_id = exc.headers.get("X-Transmission-Session-Id", "")
                    continue
                raise
            if reply.get("result") != "success":
                raise AssertionError(f"transmission {method} failed: {reply!r}")
            result: dict[str, Any] = reply.get("arguments", {})
            return result
        raise AssertionError("transmission RPC kept asking for a new session id")

    def add(self, torrent: Torrent, download_dir: Path) -> None:
        download_dir.mkdir(parents=True, exist_ok=True)
        reply = self.rpc(
            "torrent-add",
            {
                "metainfo": base64.b64encode(torrent.path.read_bytes()).decode(),
                "download-dir": str(download_dir),
                "paused": False,
            },
        )
        added = reply.get("torrent-added") or reply.get("torrent-duplicate")
        if not added:
            raise AssertionError(f"torrent-add returned {reply!r}")
        self.torrent_id = int(added["id"])

    def state(self) -> dict[str, Any]:
        fields = [
            "id", "name", "status", "percentDone", "haveValid", "leftUntilDone", "error",
            "errorString", "peersConnected", "peers", "trackerStats", "uploadedEver",
            "downloadedEver",
        ]  # fmt: skip
        reply = self.rpc("torrent-get", {"ids": [self.torrent_id], "fields": fields})
        torrents = reply.get("torrents", [])
        if not torrents:
            raise AssertionError(f"transmission has no torrent {self.torrent_id}")
        state: dict[str, Any] = torrents[0]
        return state

    def check_running(self) -> None:
        assert self.proc is not None
        require_running(self.proc)
        if self.torrent_id is not None:
            state = self.state()
            if state["error"] == 3:  # local error (1 and 2 are the tracker's warning/error)
                raise ProcessDied(f"Transmission local error: {state['errorString']!r}")

    def stop_torrent(self) -> None:
        """Stop the torrent over RPC, which announces `stopped`.

        (transmission-daemon 3.00 sends no `stopped` announce when it is itself shut down
        with SIGTERM.)
        """
        self.rpc("torrent-stop", {"ids": [self.torrent_id]})

    def is_seeding(self) -> bool:
        state = self.state()
        return bool(state["percentDone"] == 1 and state["status"] == 6)

    def describe(self) -> str:
        if self.torrent_id is None:
            return "<no torrent added>"
        state = self.state()
        lines = [
            f"status={TR_STATUS.get(state['status'], state['status'])} "
            f"percentDone={state['percentDone']} left={state['leftUntilDone']} "
            f"error={state['error']} {state['errorString']!r} "
            f"peersConnected={state['peersConnected']} "
            f"up={state['uploadedEver']} down={state['downloadedEver']}"
        ]
        for tracker in state.get("trackerStats", []):
            lines.append(
                "tracker {announce}: lastAnnounceResult={lastAnnounceResult!r} "
                "succeeded={lastAnnounceSucceeded} peers={lastAnnouncePeerCount} "
                "nextAnnounce={nextAnnounceTime} scrape={lastScrapeResult!r}".format(**tracker)
            )
        for peer in state.get("peers", []):
            lines.append(
                "peer {address}:{port} client={clientName!r} progress={progress} "
                "flags={flagStr}".format(**peer)
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# aria2
# ---------------------------------------------------------------------------


class Aria2:
    """aria2c seeding or downloading one torrent, with DHT, PEX and LPD off.

    aria2 only speaks to UDP trackers through its DHT socket, so for a udp:// tracker
    the IPv4 DHT is switched on, but isolated: no entry point, an empty routing table
    file of its own, and a peer (Transmission) that never advertises a DHT port.
    """

    def __init__(
        self,
        registry: ProcessRegistry,
        workdir: Path,
        torrent: Torrent,
        download_dir: Path,
        *,
        seed: bool,
        ipv6: bool = False,
        udp_tracker: bool = False,
    ) -> None:
        self.registry = registry
        self.workdir = workdir
        self.torrent = torrent
        self.download_dir = download_dir
        self.seed = seed
        self.ipv6 = ipv6
        self.udp_tracker = udp_tracker
        self.listen_port = free_port()
        self.dht_port = free_port()
        self.log = workdir / "aria2.log"
        self.proc: ManagedProcess | None = None

    def argv(self) -> list[str]:
        argv = [
            "aria2c",
            "--no-conf",
            f"--dir={self.download_dir}",
            f"--log={self.log}",
            "--log-level=debug",
            "--console-log-level=notice",
            "--summary-interval=0",
            "--enable-dht6=false",
            "--enable-peer-exchange=false",
            "--bt-enable-lpd=false",
            "--seed-ratio=0.0",
            f"--listen-port={self.listen_port}",
            f"--disable-ipv6={'false' if self.ipv6 else 'true'}",
            "--file-allocation=none",
            "--bt-save-metadata=false",
            "--auto-save-interval=0",
            "--allow-overwrite=true",
        ]
        if self.udp_tracker:
            argv += [
                "--enable-dht=true",
                f"--dht-listen-port={self.dht_port}",
                f"--dht-file-path={self.workdir / 'dht.dat'}",
            ]
        else:
            argv.append("--enable-dht=false")
        if self.seed:
            argv += ["--bt-seed-unverified=true", "--check-integrity=false"]
        argv.append(str(self.torrent.path))
        return argv

    def start(self) -> None:
        self.download_dir.mkdir(parents=True, exist_ok=True)
        self.proc = self.registry.spawn(
            "aria2c", self.argv(), self.workdir / "aria2.out", cwd=self.workdir
        )
        self.registry.add_diagnostic(f"aria2 log (tail of {self.log})", self.log_tail)

    def log_tail(self) -> str:
        return (
            "tracker traffic:\n"
            + grep(self.log, ["announce", "tracker", "udp"], limit=25)
            + "\n--- last lines:\n"
            + tail(self.log, 30)
        )

    def check_running(self) -> None:
        assert self.proc is not None
        require_running(self.proc)

    def stop(self) -> None:
        """Shut down the way a user would: SIGINT lets aria2 announce `stopped`.

        (aria2 takes SIGTERM as an emergency shutdown and sends no last announce.)
        """
        if self.proc is not None:
            self.proc.stop(grace=20, sig=signal.SIGINT)


def missing_binaries(names: Sequence[str]) -> list[str]:
    return [name for name in names if shutil.which(name) is None]
