"""A small strict bencode decoder, used only to check tracker replies."""

from __future__ import annotations

BValue = int | bytes | list["BValue"] | dict[bytes, "BValue"]

_DIGITS = frozenset(b"0123456789")


def bdecode(data: bytes) -> BValue:
    """Decode one complete bencoded value; raise ``ValueError`` on anything malformed."""
    try:
        value, end = _decode(data, 0)
    except (IndexError, RecursionError) as exc:
        raise ValueError("truncated or too deeply nested bencode") from exc
    if end != len(data):
        raise ValueError("trailing bytes after bencoded value")
    return value


def _decode(data: bytes, i: int) -> tuple[BValue, int]:
    c = data[i]
    if c == 0x64:  # d
        i += 1
        d: dict[bytes, BValue] = {}
        while data[i] != 0x65:
            key, i = _decode(data, i)
            if not isinstance(key, bytes):
                raise ValueError("dictionary key is not a string")
            d[key], i = _decode(data, i)
        return d, i + 1
    if c == 0x6C:  # l
        i += 1
        items: list[BValue] = []
        while data[i] != 0x65:
            item, i = _decode(data, i)
            items.append(item)
        return items, i + 1
    if c == 0x69:  # i
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if c in _DIGITS:
        colon = data.index(b":", i)
        start = colon + 1
        length = int(data[i:colon])
        end = start + length
        if end > len(data):
            raise ValueError("string runs past the end")
        return data[start:end], end
    raise ValueError(f"unexpected byte {c:#x} at {i}")
