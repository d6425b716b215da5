"""Routing a request target to (endpoint, passkey), and masking passkeys for logs."""

from __future__ import annotations

import pytest

from shoal.protocol.routes import ANNOUNCE, NOT_FOUND, SCRAPE, mask, mask_passkey, route

PK = b"Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


@pytest.mark.parametrize(("target", "expected"), [
    (b"/announce", (ANNOUNCE, b"")),
    (b"/scrape", (SCRAPE, b"")),
    (b"/announce?info_hash=x&port=1", (ANNOUNCE, b"")),
    (b"/" + PK + b"/announce", (ANNOUNCE, PK)),
    (b"/" + PK + b"/scrape", (SCRAPE, PK)),
    (b"/" + PK + b"/announce?info_hash=x", (ANNOUNCE, PK)),
    (b"/announce?info_hash=x&passkey=" + PK + b"&port=1", (ANNOUNCE, PK)),
    (b"/scrape?passkey=" + PK, (SCRAPE, PK)),
])
def test_tracker_endpoints_route_with_their_passkey(target: bytes,
                                                     expected: tuple[bytes, bytes]) -> None:
    assert route(target) == expected


@pytest.mark.parametrize("target", [
    b"/", b"", b"/favicon.ico", b"announce", b"//announce", b"/a/b/announce",
    b"/" + PK + b"/announce.php", b"/" + PK + b"/", b"/" + PK,
])
def test_other_paths_are_not_endpoints(target: bytes) -> None:
    assert route(target) == (NOT_FOUND, b"")


def test_the_path_passkey_wins_over_the_query_one() -> None:
    assert route(b"/" + PK + b"/announce?passkey=other") == (ANNOUNCE, PK)


def test_the_last_query_passkey_wins_as_for_every_repeated_parameter() -> None:
    assert route(b"/announce?passkey=first&passkey=" + PK) == (ANNOUNCE, PK)


def test_a_passkey_is_masked_but_for_four_characters() -> None:
    assert mask_passkey(PK) == PK[:4] + b"*" * 28
    assert mask_passkey(b"abc") == b"***"


@pytest.mark.parametrize("target", [
    b"/" + PK + b"/announce?info_hash=x",
    b"/announce?info_hash=x&passkey=" + PK,
    b"/" + PK + b"/announce.php",
    b"/" + PK + b"/scrape?passkey=" + PK,
])
def test_a_masked_target_never_shows_the_passkey(target: bytes) -> None:
    masked = mask(target)
    assert PK not in masked
    assert PK[:4] in masked
    assert len(masked) == len(target)


def test_masking_leaves_public_targets_alone() -> None:
    target = b"/announce?info_hash=%01%02&port=6881"
    assert mask(target) == target
