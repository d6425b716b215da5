"""Passkeys: generated from the documented alphabet, checked, and found by content."""

from __future__ import annotations

from shoal.engine.passkeys import ALPHABET, LENGTH, PasskeyIndex, generate, problem


def test_a_generated_passkey_has_32_characters_of_the_alphabet() -> None:
    key = generate()
    assert len(key) == LENGTH == 32
    assert set(key) <= set(ALPHABET)
    assert problem(key) is None


def test_generated_passkeys_differ() -> None:
    assert len({generate() for _ in range(100)}) == 100


def test_a_passkey_brought_by_a_site_may_use_url_unreserved_characters() -> None:
    assert problem("abcdef0123456789-._~") is None


def test_short_long_or_odd_passkeys_are_refused_with_a_reason() -> None:
    assert "16 to 64" in (problem("short") or "")
    assert "16 to 64" in (problem("a" * 65) or "")
    assert "letters, digits" in (problem("a" * 20 + "/") or "")
    assert "letters, digits" in (problem("a" * 20 + "%") or "")


def test_the_index_finds_a_value_by_its_exact_passkey_only() -> None:
    index: PasskeyIndex[int] = PasskeyIndex()
    key = generate()
    index.put(key, 7)
    assert index.get(key.encode()) == 7
    assert index.get(key[:-1].encode()) is None
    assert index.get(key.encode() + b"x") is None
    assert index.get(b"") is None


def test_a_removed_passkey_is_not_found() -> None:
    index: PasskeyIndex[int] = PasskeyIndex()
    index.put("k" * 32, 1)
    index.remove("k" * 32)
    assert index.get(b"k" * 32) is None
    assert len(index) == 0

