"""Lifecycle logs of a real `shoal serve` process, in JSON for log shippers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest


@pytest.mark.timeout(60)
def test_json_logs_cover_start_admin_sweeps_and_shutdown() -> None:
    command = [
        sys.executable, "-m", "shoal", "serve", "--host", "127.0.0.1", "--http-port", "0",
        "--udp-port", "0", "--set", "admin.port=0", "--set", "tracker.sweep_interval=1",
        "--set", "storage.persist=false", "--log-format", "json", "--log-level", "DEBUG",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    records = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            records.append(json.loads(line))
            if records[-1]["message"].startswith("sweep:"):
                break
        admin = next(r for r in records if r["message"].startswith("admin listening"))
        url = re.search(r"http://\S+/", admin["message"])
        assert url is not None
        with urllib.request.urlopen(url.group(0) + "health", timeout=5) as reply:
            assert reply.status == 200
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
        records += [json.loads(line) for line in rest.splitlines()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    messages = [r["message"] for r in records]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(m.startswith("Shoal ") and "serving http://127.0.0.1:" in m for m in messages)
    assert any(m.startswith("sweep:") for m in messages)
    assert messages[-2:] == ["shutting down", "stopped"]
    sweep = next(r for r in records if r["message"].startswith("sweep:"))
    assert sweep["level"] == "DEBUG"
