"""Shoal behind a real nginx, configured as contrib/nginx.conf says: the tracker sees the
client's own address (from X-Forwarded-For, believed from the trusted proxy only), not
nginx's, and not one the client wrote into the header itself."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from support.ports import free_port
from support.running import RunningTracker

from shoal.config import Settings, apply_assignments
from shoal.protocol import bencode

from .conftest import cannot_run

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "nginx.conf"
WAIT = 10.0
INFO_HASH = bytes(range(20))


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)
    if found is None:
        cannot_run("nginx is not installed: install Debian's nginx "
                   "(scripts/install-test-deps.sh)")
    return found


def site_config(tracker_port: int, listen_port: int) -> str:
    """contrib/nginx.conf with its upstream moved to the test tracker and its listener to a
    free loopback port; every proxy directive is kept as it is."""
    text = CONTRIB.read_text()
    for old, new in (("server 127.0.0.1:6969;", f"server 127.0.0.1:{tracker_port};"),
                     ("listen 80;", f"listen 127.0.0.1:{listen_port};"),
                     ("listen [::]:80;", "")):
        assert old in text, f"contrib/nginx.conf no longer has {old!r}: update this test"
        text = text.replace(old, new)
    return text


def main_config(tmp: Path, site: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "\n".join(f"    {kind}_temp_path {tmp / kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}daemon off;
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temps}
    include {site};
}}
"""


@pytest.fixture
def tracker() -> Iterator[RunningTracker]:
    settings = apply_assignments(Settings(), [
        'http.hosts=["127.0.0.1"]', "http.port=0", 'http.trusted_proxies=["127.0.0.1/32"]',
        "udp.enabled=false", "admin.enabled=false",
    ])
    with RunningTracker(settings) as running:
        yield running
        assert running.tracker.counters.internal_errors == 0


@pytest.fixture
def nginx(tracker: RunningTracker, tmp_path: Path) -> Iterator[int]:
    """nginx in front of ``tracker``, as contrib/nginx.conf configures it; yields its port."""
    binary = nginx_binary()
    port = free_port()
    site = tmp_path / "shoal.conf"
    site.write_text(site_config(tracker.port("http"), port))
    conf = tmp_path / "nginx.conf"
    conf.write_text(main_config(tmp_path, site))
    log = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(conf)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if proc.poll() is not None:
                pytest.fail("nginx exited: " + (tmp_path / "stderr.log").read_text()
                            + (tmp_path / "error.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT)
        log.close()


def announce(port: int, source: str, peer_id: bytes, peer_port: int,
             headers: str = "") -> dict[bytes, object]:
    """An announce through nginx from a client bound to the loopback address ``source``."""
    query = (f"info_hash={quote_from_bytes(INFO_HASH)}&peer_id={quote_from_bytes(peer_id)}"
             f"&port={peer_port}&uploaded=0&downloaded=0&left=100&compact=1")
    request = (f"GET /announce?{query} HTTP/1.0\r\nHost: tracker.example.org\r\n{headers}"
               "\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT,
                                  source_address=(source, 0)) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply
    decoded = bencode.decode(body)
    assert isinstance(decoded, dict) and b"failure reason" not in decoded, decoded
    return decoded


def test_the_tracker_sees_the_client_address_through_nginx(nginx: int) -> None:
    first = announce(nginx, "127.0.0.2", b"-TR2940-000000000001", 51413)
    assert first[b"external ip"] == socket.inet_aton("127.0.0.2")
    second = announce(nginx, "127.0.0.3", b"-TR2940-000000000002", 51414)
    assert second[b"external ip"] == socket.inet_aton("127.0.0.3")
    assert second[b"peers"] == socket.inet_aton("127.0.0.2") + (51413).to_bytes(2, "big")


def test_an_address_the_client_forges_in_x_forwarded_for_is_ignored(nginx: int) -> None:
    forged = "X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n"
    first = announce(nginx, "127.0.0.2", b"-qB4520-000000000001", 6881, forged)
    assert first[b"external ip"] == socket.inet_aton("127.0.0.2")
    second = announce(nginx, "127.0.0.3", b"-qB4520-000000000002", 6882)
    assert second[b"peers"] == socket.inet_aton("127.0.0.2") + (6881).to_bytes(2, "big")
