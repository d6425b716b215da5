"""Policy: how many peers to hand out, the reply interval, and when a peer expires."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from shoal.engine.policy import Policy


def test_defaults_follow_the_protocol_notes() -> None:
    p = Policy()
    assert (p.interval, p.min_interval, p.interval_jitter) == (1800, 300, 180)
    assert (p.default_numwant, p.max_numwant) == (50, 200)


@pytest.mark.parametrize("asked", [-1, -50, -(2**31)])
def test_negative_numwant_means_the_default(asked: int) -> None:
    assert Policy().numwant(asked) == 50


def test_numwant_zero_means_no_peers() -> None:
    """BEP 3: numwant "is permitted to be zero"; clients send it with stopped."""
    assert Policy().numwant(0) == 0


@pytest.mark.parametrize(("asked", "given"), [(1, 1), (49, 49), (50, 50), (199, 199)])
def test_numwant_is_what_the_client_asked_below_the_cap(asked: int, given: int) -> None:
    assert Policy().numwant(asked) == given


@pytest.mark.parametrize("asked", [200, 201, 1000, 2**31])
def test_numwant_is_capped(asked: int) -> None:
    assert Policy().numwant(asked) == 200


def test_numwant_limits_are_configurable() -> None:
    p = Policy(default_numwant=10, max_numwant=30)
    assert [p.numwant(a) for a in (-1, 0, 5, 30, 31)] == [10, 0, 5, 30, 30]


def test_cap_applies_to_the_default_too() -> None:
    assert Policy(default_numwant=80, max_numwant=30).numwant(-1) == 30


def test_numwant_cap_of_zero_hands_out_nobody() -> None:
    assert Policy(max_numwant=0).numwant(10) == 0


def test_interval_jitter_stays_within_bounds_and_reaches_both_ends() -> None:
    p = Policy(interval=100, interval_jitter=3, rng=random.Random(1))
    seen = {p.next_interval() for _ in range(500)}
    assert seen == {100, 101, 102, 103}


def test_interval_without_jitter_is_exact() -> None:
    p = Policy(interval=100, interval_jitter=0)
    assert {p.next_interval() for _ in range(50)} == {100}


def test_default_jitter_keeps_the_interval_within_bounds() -> None:
    p = Policy(rng=random.Random(2))
    assert all(1800 <= p.next_interval() <= 1980 for _ in range(1000))


def test_peer_timeout_defaults_to_one_and_a_half_intervals_plus_jitter() -> None:
    assert Policy().peer_timeout == 1800 * 3 // 2 + 180
    assert Policy(interval=101, interval_jitter=0).peer_timeout == 151


def test_explicit_peer_timeout_is_kept() -> None:
    assert Policy(peer_timeout=42).peer_timeout == 42


@pytest.mark.parametrize(
    "bad",
    [
        {"interval": 0},
        {"interval": -1},
        {"min_interval": -1},
        {"interval_jitter": -1},
        {"default_numwant": -1},
        {"max_numwant": -1},
    ],
)
def test_impossible_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Policy(**bad)


def test_policy_is_immutable_and_compares_without_its_rng() -> None:
    p = Policy(rng=random.Random(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.interval = 5  # type: ignore[misc]
    assert p == Policy(rng=random.Random(2))
