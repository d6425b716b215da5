"""The shoal-private benchmark target sends what a private tracker's users send: one user
per peer with a passkey Shoal accepts, passkeys in the HTTP paths and in BEP 41 URL data
over UDP, and a bulk import that registers every user and torrent. Its requests are read
back with Shoal's own parsers; a tiny run against it sees no refusal. Never a speed check."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pytest  # noqa: E402

from bench.http_load import encode_http_ops  # noqa: E402
from bench.private import PrivateAccounts, passkey_for, peer_index  # noqa: E402
from bench.targets import PRIVATE_TARGET, probe_http, start_target  # noqa: E402
from bench.udp_load import ACTION_ANNOUNCE, encode_udp_ops, url_data_options  # noqa: E402
from bench.workload import Announce, Scrape, Workload, WorkloadConfig, peer_id_for  # noqa: E402
from shoal.engine import passkeys  # noqa: E402
from shoal.protocol import routes  # noqa: E402
from shoal.protocol.udp import AnnounceRequestUdp, parse_request  # noqa: E402

SMALL = WorkloadConfig(torrents=20, peers=200, mix_length=400, seed=3)


TINY = ["--quick", "--duration", "1", "--warmup", "0.3", "--latency-duration", "0.5"]


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def workload() -> Workload:
    return Workload.build(SMALL)


def test_url_data_is_one_option_of_type_2_with_its_length() -> None:
    assert url_data_options(b"/abc/announce") == bytes([2, 13]) + b"/abc/announce"


def test_url_data_longer_than_255_bytes_goes_in_several_options() -> None:
    data = bytes(range(256)) + b"x" * 44  # 300 bytes
    assert url_data_options(data) == bytes([2, 255]) + data[:255] + bytes([2, 45]) + data[255:]


def test_empty_url_data_adds_no_option() -> None:
    assert url_data_options(b"") == b""


def test_bench_passkeys_are_ones_shoal_accepts_and_differ_per_user() -> None:
    keys = [passkey_for(1, i) for i in range(1000)]
    assert all(len(k) == passkeys.LENGTH and set(k) <= set(passkeys.ALPHABET) for k in keys)
    assert all(passkeys.problem(k) is None for k in keys)
    assert len(set(keys)) == len(keys)
    assert passkey_for(1, 5) == keys[5] != passkey_for(2, 5)


def test_peer_index_inverts_the_workload_peer_id() -> None:
    assert [peer_index(peer_id_for(i)) for i in (0, 7, 99_999)] == [0, 7, 99_999]
    with pytest.raises(ValueError):
        peer_index(b"-SB0001-probeprobe00")


def test_every_announce_carries_its_own_peers_passkey(workload: Workload) -> None:
    accounts = PrivateAccounts.for_workload(workload)
    assert len(accounts.passkeys) == SMALL.peers
    for op in workload.fill:
        assert accounts.passkey_of(op) == passkey_for(SMALL.seed, peer_index(op.peer_id))
    scrape = next(op for op in workload.mix if isinstance(op, Scrape))
    assert accounts.passkey_of(scrape) in accounts.passkeys


def test_import_registers_every_user_and_torrent(workload: Workload) -> None:
    accounts = PrivateAccounts.for_workload(workload)
    lines = [json.loads(line) for line in accounts.import_body().splitlines()]
    users = [r for r in lines if r["type"] == "user"]
    torrents = [r for r in lines if r["type"] == "torrent"]
    assert [(u["id"], u["passkey"]) for u in users] == [
        (i + 1, accounts.passkeys[i]) for i in range(SMALL.peers)
    ]
    assert [bytes.fromhex(t["info_hash"]) for t in torrents] == workload.info_hashes
    assert len(lines) == len(users) + len(torrents)


def test_private_udp_announces_carry_the_passkey_path_as_bep41_url_data(
    workload: Workload,
) -> None:
    accounts = PrivateAccounts.for_workload(workload)
    ops = encode_udp_ops(workload.mix, passkey_of=accounts.passkey_of)
    announces = [op for op in workload.mix if isinstance(op, Announce)]
    assert ops.actions == [ACTION_ANNOUNCE] * len(announces)  # scrapes are left out
    for op, body in zip(announces, ops.bodies, strict=True):
        datagram = struct.pack("!QII", 0x1234, ACTION_ANNOUNCE, 9) + body
        parsed = parse_request(datagram)
        assert isinstance(parsed, AnnounceRequestUdp), parsed
        assert parsed.info_hash == op.info_hash and parsed.peer_id == op.peer_id
        assert parsed.url_data == f"/{accounts.passkey_of(op)}/announce".encode()


def test_public_udp_requests_carry_no_url_data(workload: Workload) -> None:
    ops = encode_udp_ops(workload.mix)
    assert len(ops) == len(workload.mix)
    first = next(i for i, a in enumerate(ops.actions) if a == ACTION_ANNOUNCE)
    parsed = parse_request(struct.pack("!QII", 0x1234, ACTION_ANNOUNCE, 9) + ops.bodies[first])
    assert isinstance(parsed, AnnounceRequestUdp) and parsed.url_data == b""


def test_private_http_requests_route_to_the_endpoint_with_the_passkey(
    workload: Workload,
) -> None:
    accounts = PrivateAccounts.for_workload(workload)
    ops = encode_http_ops(workload.mix, close=False, passkey_of=accounts.passkey_of)
    for op, request in zip(workload.mix, ops.requests, strict=True):
        target = request.split(b" ", 2)[1]
        endpoint, passkey = routes.route(target)
        assert endpoint == (routes.ANNOUNCE if isinstance(op, Announce) else routes.SCRAPE)
        assert passkey == accounts.passkey_of(op).encode()


def test_private_target_serves_a_passkey_and_refuses_an_announce_without_one(
    workload: Workload,
) -> None:
    accounts = PrivateAccounts.for_workload(workload)
    target = start_target(PRIVATE_TARGET, workload.info_hashes, accounts=accounts)
    try:
        assert target.udp
        last_user = "/" + accounts.passkeys[-1]
        assert probe_http(target.port, workload.info_hashes[-1], last_user) is None
        refused = probe_http(target.port, workload.info_hashes[0])
        assert refused is not None and "passkey required" in refused
    finally:
        target.stop()


def test_quick_run_against_the_private_target_has_no_refusals(tmp_path: Path) -> None:
    result = run_bench(
        *TINY, "--targets", f"shoal,{PRIVATE_TARGET}", "--modes", "udp,http-keepalive",
        "--out", str(tmp_path), timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    rows = [r for r in map(json.loads, lines) if r["target"] == PRIVATE_TARGET]
    assert {r["mode"] for r in rows} == {"udp", "http-keepalive"}
    for row in rows:
        assert row["errors"] == 0 and row["fill_errors"] == 0, row
        assert row["runs"][0]["load"]["responses"] > 0, row
    assert "private / public (per CPU-s)" in (tmp_path / "latest.md").read_text()
