"""Real redis-server processes for the tests: one server, or a three-node Redis Cluster,
on free loopback ports in a temporary directory, stopped by the fixture that started them.

redis-server and redis-cli come from Debian's ``redis-server`` and ``redis-tools`` packages
(scripts/install-test-deps.sh). Under CI=true a missing one fails the test; elsewhere the
test is skipped with a message naming the package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

from support import ports

PACKAGES = {"redis-server": "redis-server", "redis-cli": "redis-tools"}
START_TIMEOUT = 10.0


def cannot_run(message: str) -> NoReturn:
    """Fail on CI (where every Redis test must run), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- CI must run the Redis store tests", pytrace=False)
    pytest.skip(message)


def require_redis(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        packages = sorted({PACKAGES[c] for c in missing})
        cannot_run(f"missing {', '.join(missing)}: install Debian's {' '.join(packages)} "
                   "(scripts/install-test-deps.sh)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, with the port 10000 above it (a Cluster node's bus)."""
    return ports.free_port(also=10000)


def command(port: int, *words: str) -> str:
    """Send one command to the server on ``port`` (inline protocol); its reply line(s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(" ".join(words).encode() + b"\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"$"):  # a bulk string: read all of it
            length = int(data[1 : data.index(b"\r\n")])
            head = data.index(b"\r\n") + 2
            while len(data) < head + length + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data[head : head + length].decode()
        return data.decode().strip()


class RedisServer:
    """One redis-server on a loopback port, with no persistence unless asked."""

    def __init__(self, workdir: Path, *extra: str, port: int | None = None) -> None:
        require_redis("redis-server")
        self.port = port if port is not None else free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--appendonly", "no",
                "--logfile", str(self.dir / "redis.log"), *self.extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if command(self.port, "PING") == "+PONG":
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


class RedisCluster:
    """Three master nodes on loopback ports, joined with ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path) -> None:
        require_redis("redis-server", "redis-cli")
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(3):
                port = free_port()
                self.nodes.append(RedisServer(
                    workdir, "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", "15000", port=port))
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0",
                 "--cluster-yes"],
                check=True, capture_output=True, timeout=30,
            )
            deadline = time.monotonic() + START_TIMEOUT
            while not all("cluster_state:ok" in command(n.port, "CLUSTER", "INFO")
                          for n in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster never reached cluster_state:ok")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
