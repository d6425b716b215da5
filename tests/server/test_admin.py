"""The admin listener against a running tracker with real HTTP and UDP traffic: /metrics,
/stats, /health and the dashboard files."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.running import RunningTracker

from shoal.config import Settings, apply_assignments
from shoal.protocol import udp as udp_codec
from shoal.types import Event

LOOPBACK = [
    'http.hosts=["127.0.0.1"]', "http.port=0",
    'udp.hosts=["127.0.0.1"]', "udp.port=0",
    "admin.port=0",
]


def running(*assignments: str) -> RunningTracker:
    return RunningTracker(apply_assignments(Settings(), [*LOOPBACK, *assignments]))


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def http_announce(rt: RunningTracker, info_hash: bytes, peer_id: bytes, port: int,
                  left: int = 1000, **extra: str) -> bytes:
    host, http_port = rt.listener("http")
    query = (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(peer_id)}"
        f"&port={port}&uploaded=0&downloaded=0&left={left}&compact=1"
    )
    for name, value in extra.items():
        query += f"&{name}={value}"
    return get(f"http://{host}:{http_port}/announce?{query}")[2]


def http_scrape(rt: RunningTracker, info_hash: bytes) -> bytes:
    host, port = rt.listener("http")
    return get(f"http://{host}:{port}/scrape?info_hash={quote_from_bytes(info_hash)}")[2]


def udp_exchange(sock: socket.socket, rt: RunningTracker, datagram: bytes) -> bytes:
    sock.sendto(datagram, rt.listener("udp"))
    return sock.recv(2048)


def udp_session(rt: RunningTracker) -> tuple[socket.socket, int]:
    """A UDP socket and the connection id the tracker issued to its address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.bind(("127.0.0.1", 0))
    reply = udp_exchange(sock, rt, udp_codec.encode_connect_request(7))
    return sock, udp_codec.parse_connect_reply(reply).connection_id


def udp_announce(rt: RunningTracker, info_hash: bytes, peer_id: bytes, port: int,
                 left: int = 1000) -> None:
    sock, connection_id = udp_session(rt)
    with sock:
        request = udp_codec.AnnounceRequestUdp(
            connection_id=connection_id, transaction_id=8, info_hash=info_hash,
            peer_id=peer_id, downloaded=0, left=left, uploaded=0, event=Event.STARTED, ip=0,
            key=1, num_want=10, port=port,
        )
        reply = udp_exchange(sock, rt, udp_codec.encode_announce_request(request))
        udp_codec.parse_announce_reply(reply)


def udp_scrape(rt: RunningTracker, info_hash: bytes) -> None:
    sock, connection_id = udp_session(rt)
    with sock:
        datagram = udp_codec.encode_scrape_request(connection_id, 9, [info_hash])
        udp_codec.parse_scrape_reply(udp_exchange(sock, rt, datagram))


def metrics(rt: RunningTracker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (sample name, sorted labels)."""
    status, headers, body = get(rt.admin_url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def requests_metric(protocol: str, kind: str, family: str = "ipv4") -> tuple[Any, ...]:
    labels = (("family", family), ("kind", kind), ("protocol", protocol))
    return ("shoal_requests_total", labels)


def stats(rt: RunningTracker) -> dict[str, Any]:
    status, headers, body = get(rt.admin_url + "/stats")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    result: dict[str, Any] = json.loads(body)
    return result


H1 = bytes(range(20))
H2 = bytes(range(20, 40))
TR = b"-TR2940-" + b"a" * 12
QB = b"-qB4520-" + b"b" * 12
LT = b"-lt0D80-" + b"c" * 12


@pytest.fixture
def tracker() -> Iterator[RunningTracker]:
    with running() as rt:
        yield rt


def test_metrics_count_http_announces_and_scrapes(tracker: RunningTracker) -> None:
    before = metrics(tracker)
    http_announce(tracker, H1, TR, 7001, left=0)
    http_announce(tracker, H1, QB, 7002)
    http_scrape(tracker, H1)
    after = metrics(tracker)
    announce = requests_metric("http", "announce")
    scrape = requests_metric("http", "scrape")
    assert before[announce] == 0 and after[announce] == 2
    assert before[scrape] == 0 and after[scrape] == 1
    assert after["shoal_torrents", ()] == 1
    assert after["shoal_peers", ()] == 2
    assert after["shoal_seeders", ()] == 1
    assert after["shoal_leechers", ()] == 1
    assert after["shoal_received_bytes_total", (("protocol", "http"),)] > 0
    assert after["shoal_sent_bytes_total", (("protocol", "http"),)] > 0
    assert after["shoal_http_connections_total", ()] >= 3


def test_metrics_count_udp_connects_announces_and_scrapes(
    udp_engine: str, tracker: RunningTracker
) -> None:
    udp_announce(tracker, H2, LT, 7003)
    udp_scrape(tracker, H2)
    after = metrics(tracker)
    assert after[requests_metric("udp", "connect")] == 2
    assert after[requests_metric("udp", "announce")] == 1
    assert after[requests_metric("udp", "scrape")] == 1
    assert after[requests_metric("http", "announce")] == 0
    assert after["shoal_peers", ()] == 1
    assert after["shoal_received_bytes_total", (("protocol", "udp"),)] > 0
    assert after["shoal_request_duration_seconds_count", ()] == 4
    assert after["shoal_request_duration_seconds_bucket", (("le", "+Inf"),)] == 4


def test_metrics_count_failures_by_reason(tracker: RunningTracker) -> None:
    host, port = tracker.listener("http")
    get(f"http://{host}:{port}/announce?peer_id=x")
    after = metrics(tracker)
    assert after["shoal_failures_total", (("reason", "missing info_hash"),)] == 1
    # A refusal is counted once, as the announce it was; its reason is in the failures.
    assert after[requests_metric("http", "announce")] == 1
    assert after[requests_metric("http", "error")] == 0


def test_metrics_include_process_figures_and_listener_state(tracker: RunningTracker) -> None:
    after = metrics(tracker)
    assert after["process_resident_memory_bytes", ()] > 0
    up = {labels: v for (name, labels), v in after.items() if name == "shoal_listener_up"}
    assert sorted(dict(labels)["kind"] for labels in up) == ["http", "udp"]
    assert all(v == 1 for v in up.values())
    assert after["shoal_info", (("version", __import__("shoal").__version__),)] == 1


def test_stats_reports_totals_requests_swarms_and_clients(tracker: RunningTracker) -> None:
    http_announce(tracker, H1, TR, 7001, left=0)
    http_announce(tracker, H1, QB, 7002)
    udp_announce(tracker, H2, LT, 7003)
    body = stats(tracker)
    assert body["healthy"] is True
    assert body["totals"] == {
        "torrents": 2, "peers": 3, "seeders": 1, "leechers": 2, "completed": 0,
    }
    assert body["requests"]["by_protocol"] == {"http": 2, "udp": 2}
    assert body["requests"]["by_kind"] == {"announce": 3, "connect": 1}
    assert body["requests"]["by_family"] == {"ipv4": 4, "ipv6": 0}
    assert body["top_swarms"][0] == {
        "info_hash": H1.hex(), "peers": 2, "seeders": 1, "leechers": 1, "completed": 0,
    }
    assert body["top_swarms"][1]["info_hash"] == H2.hex()
    mix = {c["client"]: c for c in body["clients"]["mix"]}
    assert body["clients"]["sampled_peers"] == 3
    assert mix["Transmission"]["versions"] == [{"version": "2.94", "peers": 1}]
    assert mix["qBittorrent"]["versions"] == [{"version": "4.5.2", "peers": 1}]
    assert mix["libtorrent (rakshasa)"]["peers"] == 1
    assert body["history"]["columns"] == ["time", "http", "udp"]
    assert body["history"]["points"][-1][1:] == [2, 2]
    assert body["latency"]["count"] >= 2


def test_health_is_ok_while_every_listener_serves(tracker: RunningTracker) -> None:
    status, _, body = get(tracker.admin_url + "/health")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert {x["kind"] for x in health["listeners"]} == {"http", "udp"}


def test_health_names_every_background_component(tracker: RunningTracker) -> None:
    status, _, body = get(tracker.admin_url + "/health")
    components = {c["name"]: c["running"] for c in json.loads(body)["components"]}
    assert status == 200
    assert components == {"clock": True, "sweeper": True, "counters-puller": True,
                          "http-reaper": True, "ws-keeper": True}
    _, _, metrics = get(tracker.admin_url + "/metrics")
    assert b'shoal_component_up{component="sweeper"} 1.0' in metrics


def test_health_is_503_while_a_background_component_is_down(tracker: RunningTracker) -> None:
    sweeper = tracker.tracker.supervisor.components["sweeper"]
    tracker.in_loop(lambda: setattr(sweeper, "running", False))
    status, _, body = get(tracker.admin_url + "/health")
    assert status == 503
    assert [c["name"] for c in json.loads(body)["components"] if not c["running"]] == [
        "sweeper"]


def close_listener(tracker: RunningTracker, udp: bool) -> None:
    """Close the first UDP (or HTTP) listening socket, whichever object serves it."""
    t = tracker.tracker
    for transport in t._transports:
        if (transport.get_extra_info("socket").type == socket.SOCK_DGRAM) == udp:
            tracker.in_loop(transport.close)
            return
    assert not udp
    tracker.in_loop(t._servers[0].close)


def test_health_is_503_when_the_http_listener_is_closed(tracker: RunningTracker) -> None:
    close_listener(tracker, udp=False)
    status, _, body = get(tracker.admin_url + "/health")
    assert status == 503
    health = json.loads(body)
    down = [x for x in health["listeners"] if not x["serving"]]
    assert [x["kind"] for x in down] == ["http"]
    assert stats(tracker)["healthy"] is False


def test_health_is_503_when_the_udp_listener_is_closed(tracker: RunningTracker) -> None:
    close_listener(tracker, udp=True)
    status, _, body = get(tracker.admin_url + "/health")
    assert status == 503
    down = [x["kind"] for x in json.loads(body)["listeners"] if not x["serving"]]
    assert down == ["udp"]


def test_dashboard_files_are_served_with_their_types(tracker: RunningTracker) -> None:
    status, headers, page = get(tracker.admin_url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"dashboard.js" in page and b"dashboard.css" in page
    assert b"http://" not in page and b"https://" not in page  # no external resources
    for path, kind in (("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css")):
        status, headers, _ = get(tracker.admin_url + path)
        assert status == 200 and headers["Content-Type"].startswith(kind)
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_dashboard_and_metrics_can_be_turned_off() -> None:
    with running("admin.dashboard=false", "admin.metrics=false") as rt:
        assert get(rt.admin_url + "/")[0] == 404
        assert get(rt.admin_url + "/metrics")[0] == 404
        assert get(rt.admin_url + "/stats")[0] == 200
        assert get(rt.admin_url + "/health")[0] == 200
        admin = rt.tracker.admin
        assert admin is not None and admin.registry is None and not admin._tasks


def test_admin_can_be_turned_off() -> None:
    with running("admin.enabled=false") as rt:
        assert rt.tracker.admin is None and rt.tracker.admin_listener is None
        assert [x.kind for x in rt.tracker.listeners] == ["http", "udp"]


def test_admin_port_in_use_stops_the_start_naming_the_admin_listener() -> None:
    """An operator who configured /health relies on it: a lost admin port is fatal, not a
    tracker running silently without it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match="admin: cannot listen"):
            running(f"admin.port={port}")


def raw_request(rt: RunningTracker, data: bytes) -> bytes:
    listener = rt.tracker.admin_listener
    assert listener is not None
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_only_get_and_head_are_served(tracker: RunningTracker) -> None:
    reply = raw_request(tracker, b"POST /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET, HEAD" in reply
    head = raw_request(tracker, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")


def test_bad_requests_are_refused(tracker: RunningTracker) -> None:
    assert raw_request(tracker, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET /stats HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_request(tracker, huge).startswith(b"HTTP/1.1 431 ")
    assert get(tracker.admin_url + "/nothing")[0] == 404


def test_stats_command_prints_the_figures_as_tables(
    tracker: RunningTracker, capsys: pytest.CaptureFixture[str]
) -> None:
    from shoal.cli import main

    http_announce(tracker, H1, TR, 7001, left=0)
    udp_announce(tracker, H1, QB, 7002)
    assert main(["stats", "--url", tracker.admin_url]) == 0
    out = capsys.readouterr().out
    assert "healthy" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["torrents", "1"] in lines and ["peers", "2"] in lines
    assert ["announce", "1", "1", "2"] in lines  # http, udp, total
    assert ["connect", "0", "1", "1"] in lines
    assert [H1.hex(), "2", "1", "1", "0"] in lines
    assert ["Transmission", "1", "50.0%", "2.94"] in lines


def test_stats_command_prints_json_on_request(
    tracker: RunningTracker, capsys: pytest.CaptureFixture[str]
) -> None:
    from shoal.cli import main

    assert main(["stats", "--url", tracker.admin_url + "/", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["torrents"] == 0


def test_stats_command_exits_3_when_a_listener_is_down(
    tracker: RunningTracker, capsys: pytest.CaptureFixture[str]
) -> None:
    from shoal.cli import main

    tracker.in_loop(lambda: tracker.tracker._transports[0].close())
    assert main(["stats", "--url", tracker.admin_url]) == 3
    assert "NOT HEALTHY" in capsys.readouterr().out


def test_stats_command_says_when_the_tracker_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from shoal.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        assert main(["stats", "--url", f"http://127.0.0.1:{port}", "--timeout", "2"]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_a_client_that_sends_nothing_is_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from shoal.server import admin, app

    monkeypatch.setattr(app, "AdminOptions",
                        functools.partial(admin.AdminOptions, request_timeout=0.2))
    with running() as rt:
        assert raw_request(rt, b"GET /stats HTTP/1.1\r\n").startswith(b"HTTP/1.1 408 ")


def test_connections_beyond_the_cap_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from shoal.server import admin, app

    monkeypatch.setattr(app, "AdminOptions",
                        functools.partial(admin.AdminOptions, max_connections=2))
    with running() as rt:
        listener = rt.tracker.admin_listener
        assert listener is not None
        idle = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(2)]
        try:
            for sock in idle:  # both are being served (waiting for their request heads)
                sock.sendall(b"GET")
            admin_server = rt.tracker.admin
            assert admin_server is not None
            for _ in range(100):
                if rt.in_loop(lambda: len(admin_server._clients)) == 2:
                    break
                time.sleep(0.01)
            try:
                refused = raw_request(rt, b"GET /health HTTP/1.1\r\n\r\n")
            except ConnectionResetError:
                refused = b""
            assert refused == b""
        finally:
            for sock in idle:
                sock.close()
        assert raw_request(rt, b"GET /health HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")
