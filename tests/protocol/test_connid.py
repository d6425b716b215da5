"""Stateless UDP connection ids: bound to an address, valid for ttl seconds, unforgeable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol.connid import DEFAULT_SKEW, DEFAULT_TTL, ConnectionIds

SECRET = bytes(range(32))
ADDR = bytes([10, 0, 0, 1]) + (6881).to_bytes(2, "big")
ADDR6 = bytes.fromhex("20010db8000000000000000000000001") + (6881).to_bytes(2, "big")
NOW = 1_700_000_000
TTL = 120


@pytest.fixture
def ids() -> ConnectionIds:
    return ConnectionIds(SECRET, ttl=TTL)


def test_default_window_is_at_least_two_minutes() -> None:
    assert DEFAULT_TTL >= 120
    assert ConnectionIds(SECRET).ttl == DEFAULT_TTL


def test_id_fits_64_bits(ids: ConnectionIds) -> None:
    conn_id = ids.issue(ADDR, NOW)
    assert 0 <= conn_id < 2**64


def test_valid_when_issued(ids: ConnectionIds) -> None:
    assert ids.valid(ids.issue(ADDR, NOW), ADDR, NOW)


def test_valid_until_last_second_of_ttl(ids: ConnectionIds) -> None:
    assert ids.valid(ids.issue(ADDR, NOW), ADDR, NOW + TTL - 1)


def test_invalid_once_ttl_has_passed(ids: ConnectionIds) -> None:
    conn_id = ids.issue(ADDR, NOW)
    assert not ids.valid(conn_id, ADDR, NOW + TTL)
    assert not ids.valid(conn_id, ADDR, NOW + 10 * TTL)


def test_invalid_long_after_even_when_stamp_wraps(ids: ConnectionIds) -> None:
    conn_id = ids.issue(ADDR, NOW)
    assert not ids.valid(conn_id, ADDR, NOW + 2**16)


def test_accepted_from_slightly_in_the_future(ids: ConnectionIds) -> None:
    conn_id = ids.issue(ADDR, NOW)
    assert ids.valid(conn_id, ADDR, NOW - DEFAULT_SKEW)


def test_rejected_from_further_in_the_future(ids: ConnectionIds) -> None:
    conn_id = ids.issue(ADDR, NOW)
    assert not ids.valid(conn_id, ADDR, NOW - DEFAULT_SKEW - 1)


def test_window_spans_stamp_wraparound(ids: ConnectionIds) -> None:
    now = 3 * 2**16 - 10
    conn_id = ids.issue(ADDR, now)
    assert ids.valid(conn_id, ADDR, now + 50)
    assert not ids.valid(conn_id, ADDR, now + TTL)


def test_invalid_for_another_address(ids: ConnectionIds) -> None:
    other = bytes([10, 0, 0, 2]) + ADDR[4:]
    assert not ids.valid(ids.issue(ADDR, NOW), other, NOW)


def test_invalid_for_another_port(ids: ConnectionIds) -> None:
    other = ADDR[:4] + (6882).to_bytes(2, "big")
    assert not ids.valid(ids.issue(ADDR, NOW), other, NOW)


def test_works_for_ipv6_addresses(ids: ConnectionIds) -> None:
    conn_id = ids.issue(ADDR6, NOW)
    assert ids.valid(conn_id, ADDR6, NOW + 1)
    assert not ids.valid(conn_id, ADDR, NOW + 1)


def test_another_instance_with_same_secret_accepts(ids: ConnectionIds) -> None:
    other = ConnectionIds(SECRET, ttl=TTL)
    assert other.valid(ids.issue(ADDR, NOW), ADDR, NOW + 1)


def test_instance_with_different_secret_rejects(ids: ConnectionIds) -> None:
    other = ConnectionIds(b"another secret entirely, 32 byte", ttl=TTL)
    assert not other.valid(ids.issue(ADDR, NOW), ADDR, NOW)


@pytest.mark.parametrize("bit", range(64))
def test_tampered_id_rejected(ids: ConnectionIds, bit: int) -> None:
    conn_id = ids.issue(ADDR, NOW)
    assert not ids.valid(conn_id ^ (1 << bit), ADDR, NOW + 1)


def test_out_of_range_id_rejected(ids: ConnectionIds) -> None:
    conn_id = ids.issue(ADDR, NOW)
    assert not ids.valid(conn_id + 2**64, ADDR, NOW)
    assert not ids.valid(-1, ADDR, NOW)


def test_ids_differ_by_address_and_time(ids: ConnectionIds) -> None:
    other = ADDR[:4] + (6882).to_bytes(2, "big")
    assert ids.issue(ADDR, NOW) != ids.issue(other, NOW)
    assert ids.issue(ADDR, NOW) != ids.issue(ADDR, NOW + 1)


def test_long_secret_is_accepted() -> None:
    ids = ConnectionIds(b"x" * 200)
    assert ids.valid(ids.issue(ADDR, NOW), ADDR, NOW)


@pytest.mark.parametrize(
    ("secret", "ttl", "skew"),
    [(b"", 120, 5), (SECRET, 0, 5), (SECRET, 120, -1), (SECRET, 2**16, 0)],
)
def test_bad_settings_refused(secret: bytes, ttl: int, skew: int) -> None:
    with pytest.raises(ValueError):
        ConnectionIds(secret, ttl=ttl, skew=skew)


@given(
    addr=st.binary(min_size=6, max_size=6) | st.binary(min_size=18, max_size=18),
    now=st.integers(min_value=0, max_value=2**40),
    age=st.integers(min_value=0, max_value=TTL - 1),
)
def test_valid_anywhere_inside_window(addr: bytes, now: int, age: int) -> None:
    ids = ConnectionIds(SECRET, ttl=TTL)
    assert ids.valid(ids.issue(addr, now), addr, now + age)


@given(
    now=st.integers(min_value=0, max_value=2**40),
    later=st.integers(min_value=TTL, max_value=2**20),
)
def test_invalid_anywhere_after_window(now: int, later: int) -> None:
    ids = ConnectionIds(SECRET, ttl=TTL)
    assert not ids.valid(ids.issue(ADDR, now), ADDR, now + later)


@given(age=st.integers(-DEFAULT_SKEW - 3, DEFAULT_TTL + 3))
def test_window_is_exactly_when_the_id_is_valid(age: int) -> None:
    """``window`` tells a caller how long it may remember a checked id: every second in it
    is a second at which ``valid`` accepts the id, and no second outside it is."""
    ids = ConnectionIds(SECRET)
    conn_id = ids.issue(ADDR, NOW)
    now = NOW + age
    window = ids.window(conn_id, ADDR, now)
    assert (window is not None) == ids.valid(conn_id, ADDR, now)
    if window is not None:
        first, last = window
        assert (first, last) == (NOW - DEFAULT_SKEW, NOW + DEFAULT_TTL - 1)
        assert ids.valid(conn_id, ADDR, first) and ids.valid(conn_id, ADDR, last)
        assert not ids.valid(conn_id, ADDR, first - 1)
        assert not ids.valid(conn_id, ADDR, last + 1)
    assert ids.window(conn_id, ADDR6, now) is None
