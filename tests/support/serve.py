"""``python -m shoal serve`` as a real process for the tests that need one (restarts,
signals, several nodes): started with no ``SHOAL_*`` variable of the caller's, its stderr
appended to a log file, and waited for until a port of its accepts connections."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def start_serve(config: Path, port: int, log: Path, *, udp: bool = True,
                ready_port: int | None = None, wait: float = 20.0) -> subprocess.Popen[bytes]:
    """Serve HTTP (and UDP, unless ``udp`` is false) on 127.0.0.1:``port`` with ``config``;
    return once ``ready_port`` (default ``port``) accepts a TCP connection. A process that
    exits first, or a wait past ``wait`` seconds, fails with the log's text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    command = [sys.executable, "-m", "shoal", "serve", "--config", str(config),
               "--host", "127.0.0.1", "--http-port", str(port)]
    if udp:
        command += ["--udp-port", str(port)]
    with open(log, "a") as errors:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=errors, env=env)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", ready_port or port), timeout=1):
                return proc
        except OSError:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
    raise TimeoutError(log.read_text())
