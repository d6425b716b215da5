"""Bencode (BEP 3): byte strings, integers, lists and dictionaries with byte-string keys.

Small enough to write here; the announce hot path does not use it (see ``http.py``, which
joins pre-encoded pieces), so it favours strictness over speed: the decoder accepts only
canonical encodings (no leading zeros, no ``-0``, keys sorted and unique) and says where
the input is wrong.
"""

from __future__ import annotations

from typing import TypeAlias

Bencodable: TypeAlias = bytes | int | list["Bencodable"] | dict[bytes, "Bencodable"]


class BencodeError(ValueError):
    """Input that is not canonical bencode."""


def encode(value: Bencodable | str) -> bytes:
    """Encode ``value``; ``str`` is encoded as UTF-8 bytes, dict keys are sorted."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: object, out: list[bytes]) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, str):
        _encode(value.encode(), out)
    elif isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        keys: dict[bytes, object] = {}
        for k, v in value.items():
            if isinstance(k, str):
                k = k.encode()
            elif not isinstance(k, bytes):
                raise TypeError(f"dictionary keys must be bytes or str, not {type(k).__name__}")
            if k in keys:
                raise ValueError(f"dictionary key {k!r} given twice")
            keys[k] = v
        for key in sorted(keys):
            _encode(key, out)
            _encode(keys[key], out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> Bencodable:
    """Decode one complete bencoded value; trailing bytes are an error."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


_MAX_DEPTH = 100


def _decode(data: bytes, pos: int, depth: int) -> tuple[Bencodable, int]:
    if depth > _MAX_DEPTH:
        raise BencodeError("nested too deeply")
    if pos >= len(data):
        raise BencodeError(f"unexpected end at offset {pos}")
    lead = data[pos]
    if lead == 0x69:  # i
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError(f"unterminated integer at offset {pos}")
        text = data[pos + 1 : end]
        if not _canonical_int(text):
            raise BencodeError(f"bad integer at offset {pos}")
        try:
            number = int(text)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            raise BencodeError(f"integer too long at offset {pos}") from None
        return number, end + 1
    if lead == 0x6C:  # l
        items: list[Bencodable] = []
        pos += 1
        while pos < len(data) and data[pos] != 0x65:
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        if pos >= len(data):
            raise BencodeError("unterminated list")
        return items, pos + 1
    if lead == 0x64:  # d
        result: dict[bytes, Bencodable] = {}
        previous: bytes | None = None
        pos += 1
        while pos < len(data) and data[pos] != 0x65:
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, bytes):
                raise BencodeError(f"dictionary key is not a string at offset {pos}")
            if previous is not None and key <= previous:
                raise BencodeError(f"dictionary keys unsorted or repeated at offset {pos}")
            previous = key
            result[key], pos = _decode(data, pos, depth + 1)
        if pos >= len(data):
            raise BencodeError("unterminated dictionary")
        return result, pos + 1
    if 0x30 <= lead <= 0x39:
        colon = data.find(b":", pos)
        if colon < 0:
            raise BencodeError(f"string length without ':' at offset {pos}")
        text = data[pos:colon]
        if not text.isdigit() or (len(text) > 1 and text[0] == 0x30):
            raise BencodeError(f"bad string length at offset {pos}")
        start = colon + 1
        # A length with more digits than the input's own length cannot fit (and a huge one
        # would trip int()'s digit limit).
        if len(text) > len(str(len(data))) or start + int(text) > len(data):
            raise BencodeError(f"string runs past the end at offset {pos}")
        length = int(text)
        return data[start : start + length], start + length
    raise BencodeError(f"unexpected byte {lead:#04x} at offset {pos}")


def _canonical_int(text: bytes) -> bool:
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit():
        return False
    leading_zero = digits[0] == 0x30 and len(digits) > 1
    return not (leading_zero or (digits == b"0" and text[:1] == b"-"))
