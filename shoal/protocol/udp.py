"""The UDP tracker protocol (BEP 15) with announce options (BEP 41), as a pure codec.

Requests become records and replies become bytes; nothing here touches a socket or a clock.
Parsing never raises: a bad datagram becomes :class:`Malformed`, which says whether an error
reply may be sent at all, so the server cannot be used to reflect traffic at a spoofed victim.
The client-side half (request encoders, reply decoders) serves the tests and the load generator.
All integers are big-endian; transaction ids and keys are treated as opaque unsigned 32-bit.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from shoal.protocol.compact import pack_address
from shoal.types import (
    COMPACT_V4_LENGTH,
    INFO_HASH_LENGTH,
    AnnounceRequest,
    Event,
    SwarmCounts,
)

PROTOCOL_ID = 0x41727101980
CONNECT = 0
ANNOUNCE = 1
SCRAPE = 2
ERROR = 3

HEADER_LENGTH = 16
"""Every request starts with connection id (u64), action (u32), transaction id (u32)."""
ANNOUNCE_LENGTH = 98
"""A BEP 15 announce without BEP 41 options."""
MAX_SCRAPE_HASHES = 74
"""About what fits one datagram; more is refused rather than truncated."""
MAX_DATAGRAM = HEADER_LENGTH + MAX_SCRAPE_HASHES * INFO_HASH_LENGTH
"""No valid request is longer (a full scrape request, 1,496 bytes): longer ones are dropped
unread, so an unverified source can never make the tracker work through a big datagram."""
MAX_OPTIONS = 512
"""Bytes of BEP 41 options accepted after an announce (URL data with a passkey path needs
well under 100); a longer datagram is dropped unread."""
MAX_ANNOUNCE_LENGTH = ANNOUNCE_LENGTH + MAX_OPTIONS
REPLY_BUDGET = 1200
"""Bytes a reply datagram should stay within, to avoid IP fragmentation on common paths."""
ANNOUNCE_REPLY_HEADER = 20

OPTION_END = 0
OPTION_NOP = 1
OPTION_URL_DATA = 2

_I32_MAX = 0x7FFFFFFF

_HEADER = struct.Struct(">QII")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_REPLY_HEADER = struct.Struct(">II")
_CONNECT_REPLY = struct.Struct(">IIQ")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_SCRAPE_ENTRY = struct.Struct(">III")

_ERROR_HEAD = ERROR.to_bytes(4, "big")
EXPIRED = "connection id expired"
# Whole scrape replies by hash count; signed fields so a figure past 2**31 - 1 fails and is
# clamped on the slow path.
_SCRAPE_REPLIES = [struct.Struct(">II" + "iii" * count) for count in range(MAX_SCRAPE_HASHES + 1)]

# Events 0-3 are BEP 15's; 4 (paused, BEP 21) is what libtorrent sends over UDP.
_EVENTS = {int(event): event for event in Event}


# Request records are made once per datagram: slotted but not frozen, as a frozen dataclass
# costs about three times as much to build. Treat them as immutable all the same.


@dataclass(slots=True)
class ConnectRequest:
    """A connect request: the client wants a connection id."""

    transaction_id: int


@dataclass(slots=True)
class AnnounceRequestUdp:
    """An announce as it came over UDP, fields raw (``ip`` 0 means the source address).

    ``event`` is already mapped (unknown numbers become ``Event.NONE``); ``num_want`` -1 means
    the default; ``url_data`` is the BEP 41 URL data, its chunks concatenated.
    """

    connection_id: int
    transaction_id: int
    info_hash: bytes
    peer_id: bytes
    downloaded: int
    left: int
    uploaded: int
    event: Event
    ip: int
    key: int
    num_want: int
    port: int
    url_data: bytes = b""


@dataclass(slots=True)
class ScrapeRequestUdp:
    """A scrape of 1 to ``MAX_SCRAPE_HASHES`` info hashes, each 20 bytes."""

    connection_id: int
    transaction_id: int
    info_hashes: list[bytes]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A datagram that is not a valid request, and whether answering it is safe.

    ``reply`` is true only when the header was complete with a known action and an error reply
    would be no larger than the datagram. ``connection_id`` is set for announce and scrape
    datagrams: the server should answer only if it is valid, so that a spoofed datagram with
    a made-up id draws no reply at all.
    """

    transaction_id: int | None
    message: str
    reply: bool
    connection_id: int | None = None
    bad_id: bool = False


Request: TypeAlias = ConnectRequest | AnnounceRequestUdp | ScrapeRequestUdp
ParseResult: TypeAlias = Request | Malformed


def _refuse(connection_id: int, transaction_id: int, message: str, size: int) -> Malformed:
    """A Malformed for a request with a known action; replyable if the error is not larger."""
    reply = _REPLY_HEADER.size + len(message) <= size
    return Malformed(transaction_id, message, reply, connection_id)


def _head(data: bytes) -> tuple[int, int, int, int] | Malformed:
    """(size, connection id, action, transaction id), or why the datagram is no request:
    too short for a header, or longer than any request (then it is not read at all)."""
    size = len(data)
    if size < HEADER_LENGTH:
        return Malformed(None, "packet too short", False)
    if size > MAX_DATAGRAM:
        return Malformed(None, "packet too long", False)
    connection_id, action, transaction_id = _HEADER.unpack_from(data)
    return size, connection_id, action, transaction_id


def parse_request(data: bytes) -> ParseResult:
    """Decode one request datagram; never raises."""
    head = _head(data)
    if isinstance(head, Malformed):
        return head
    size, connection_id, action, transaction_id = head
    if action == ANNOUNCE:
        return _parse_announce(data, size, connection_id, transaction_id)
    if action == CONNECT:
        if connection_id != PROTOCOL_ID:
            return Malformed(transaction_id, "wrong protocol id", False)
        return ConnectRequest(transaction_id)
    if action == SCRAPE:
        return _parse_scrape(data, size, connection_id, transaction_id)
    return Malformed(transaction_id, "unknown action", False, connection_id)


def _parse_announce(
    data: bytes, size: int, connection_id: int, transaction_id: int
) -> AnnounceRequestUdp | Malformed:
    if size < ANNOUNCE_LENGTH:
        return _refuse(connection_id, transaction_id, "announce too short", size)
    (
        _,
        _,
        _,
        info_hash,
        peer_id,
        downloaded,
        left,
        uploaded,
        event,
        ip,
        key,
        num_want,
        port,
    ) = _ANNOUNCE.unpack_from(data)
    if port == 0:
        return _refuse(connection_id, transaction_id, "invalid port", size)
    if size > MAX_ANNOUNCE_LENGTH:
        return _refuse(connection_id, transaction_id, "announce options too long", size)
    url_data = b""
    if size > ANNOUNCE_LENGTH:
        options = _parse_options(data, size)
        if options is None:
            return _refuse(connection_id, transaction_id, "truncated options", size)
        url_data = options
    return AnnounceRequestUdp(
        connection_id,
        transaction_id,
        info_hash,
        peer_id,
        downloaded,
        left,
        uploaded,
        _EVENTS.get(event, Event.NONE),
        ip,
        key,
        num_want,
        port,
        url_data,
    )


_NOPS = re.compile(rb"\x01*")  # BEP 41 no-op options, skipped in one C call however many


def _parse_options(data: bytes, size: int) -> bytes | None:
    """BEP 41 options after the announce: the URL data, or None if the list is truncated.

    Runs of no-op bytes are skipped by one regex match; every other option is at least two
    bytes, so the Python loop turns at most ``MAX_OPTIONS // 2`` times."""
    chunks: list[bytes] = []
    pos = ANNOUNCE_LENGTH
    skip = _NOPS.match
    while pos < size:
        match = skip(data, pos)
        pos = match.end() if match is not None else pos
        if pos >= size:
            break
        kind = data[pos]
        if kind == OPTION_END:
            break
        if pos + 1 >= size:
            return None
        end = pos + 2 + data[pos + 1]
        if end > size:
            return None
        if kind == OPTION_URL_DATA:
            chunks.append(data[pos + 2 : end])
        pos = end
    return b"".join(chunks)


def _parse_scrape(
    data: bytes, size: int, connection_id: int, transaction_id: int
) -> ScrapeRequestUdp | Malformed:
    body = size - HEADER_LENGTH
    if body == 0:
        return _refuse(connection_id, transaction_id, "no info_hash", size)
    if body % INFO_HASH_LENGTH:
        return _refuse(connection_id, transaction_id, "bad scrape length", size)
    if body > MAX_SCRAPE_HASHES * INFO_HASH_LENGTH:
        return _refuse(connection_id, transaction_id, "too many info_hashes", size)
    hashes = [data[i : i + INFO_HASH_LENGTH] for i in range(HEADER_LENGTH, size, INFO_HASH_LENGTH)]
    return ScrapeRequestUdp(connection_id, transaction_id, hashes)


Decoded: TypeAlias = tuple[int, int, AnnounceRequest | list[bytes] | None]
"""``(action, transaction_id, payload)``: the engine's request for an announce, the info
hashes for a scrape, None for a connect."""


def decode_request(
    data: bytes,
    ip: bytes,
    source: bytes,
    id_ok: Callable[[int, bytes], bool],
    allow_ip_param: bool = False,
) -> Decoded | Malformed:
    """The server's one call from a datagram to a validated request; never raises.

    ``ip`` is the client's packed IP (4 or 16 bytes, IPv4-mapped already turned into IPv4)
    and ``source`` its packed address with the source port; ``id_ok(connection_id, source)``
    checks a connection id. Work for an unverified source stays tiny: a datagram longer
    than any valid request is dropped unread, and the connection id of an announce or scrape
    is checked right after the 16-byte header, before anything else is parsed. A bad id
    gets an error reply only when it is no larger than the datagram (no amplification).
    The announce's peer address is ``ip`` (or, with ``allow_ip_param``, a non-zero IPv4 IP
    field from an IPv4 client) with the announced port; its numwant is capped to what one
    reply datagram holds, 0 kept as "no peers" and any negative as "the default" (-1).
    """
    head = _head(data)
    if isinstance(head, Malformed):
        return head
    size, connection_id, action, transaction_id = head
    if action == CONNECT:
        if connection_id != PROTOCOL_ID:
            return Malformed(transaction_id, "wrong protocol id", False)
        return CONNECT, transaction_id, None
    if action != ANNOUNCE and action != SCRAPE:
        return Malformed(transaction_id, "unknown action", False)
    if not id_ok(connection_id, source):
        reply = _REPLY_HEADER.size + len(EXPIRED) <= size
        return Malformed(transaction_id, EXPIRED, reply, bad_id=True)
    if action == SCRAPE:
        found = _parse_scrape(data, size, connection_id, transaction_id)
        if isinstance(found, Malformed):
            return _refuse(connection_id, transaction_id, found.message, size)
        return SCRAPE, transaction_id, found.info_hashes
    if size < ANNOUNCE_LENGTH:
        return _refuse(connection_id, transaction_id, "announce too short", size)
    if size > MAX_ANNOUNCE_LENGTH:
        return _refuse(connection_id, transaction_id, "announce options too long", size)
    (_, _, _, info_hash, peer_id, downloaded, left, uploaded, event, ip_field, key, num_want,
     port) = _ANNOUNCE.unpack_from(data)
    if port == 0:
        return _refuse(connection_id, transaction_id, "invalid port", size)
    url_data = b""
    if size > ANNOUNCE_LENGTH:
        options = _parse_options(data, size)
        if options is None:
            return _refuse(connection_id, transaction_id, "truncated options", size)
        url_data = options
    if allow_ip_param and ip_field and len(ip) == 4:
        ip = ip_field.to_bytes(4, "big")
    if num_want > 0:
        num_want = min(num_want, _MAX_PEERS_V4 if len(ip) == 4 else _MAX_PEERS_V6)
    elif num_want < 0:
        num_want = -1
    request = AnnounceRequest(
        info_hash, peer_id, pack_address(ip, port), uploaded, downloaded, left,
        _EVENTS.get(event, Event.NONE), num_want, key, False, False, url_data,
    )  # fmt: skip
    return ANNOUNCE, transaction_id, request


# Server side: replies.


def encode_connect(transaction_id: int, connection_id: int) -> bytes:
    """The 16-byte connect reply."""
    return _CONNECT_REPLY.pack(CONNECT, transaction_id, connection_id)


def encode_announce(
    transaction_id: int, interval: int, leechers: int, seeders: int, peers: bytes
) -> bytes:
    """An announce reply; ``peers`` holds compact entries of one family (6 or 18 bytes each).

    Figures above 2**31 - 1 are clamped, since clients read them as signed 32-bit.
    """
    return (
        _ANNOUNCE_REPLY.pack(
            ANNOUNCE,
            transaction_id,
            min(interval, _I32_MAX),
            min(leechers, _I32_MAX),
            min(seeders, _I32_MAX),
        )
        + peers
    )


def encode_scrape(transaction_id: int, counts: Sequence[SwarmCounts]) -> bytes:
    """A scrape reply: per hash seeders, completed, leechers (BEP 15's order), clamped."""
    flat = [SCRAPE, transaction_id]
    for complete, incomplete, downloaded in counts:
        flat += (complete, downloaded, incomplete)
    try:
        return _SCRAPE_REPLIES[len(counts)].pack(*flat)
    except (IndexError, struct.error):  # more hashes than a request may hold, or big figures
        return _encode_scrape_clamped(transaction_id, counts)


def _encode_scrape_clamped(transaction_id: int, counts: Sequence[SwarmCounts]) -> bytes:
    pack = _SCRAPE_ENTRY.pack
    entries = [
        pack(min(complete, _I32_MAX), min(downloaded, _I32_MAX), min(incomplete, _I32_MAX))
        for complete, incomplete, downloaded in counts
    ]
    return _REPLY_HEADER.pack(SCRAPE, transaction_id) + b"".join(entries)


def encode_error(transaction_id: int, message: str) -> bytes:
    """An error reply carrying ``message`` as UTF-8."""
    return _ERROR_HEAD + transaction_id.to_bytes(4, "big") + message.encode("utf-8", "replace")


def max_peers(family_width: int, budget: int = REPLY_BUDGET) -> int:
    """How many compact peers of ``family_width`` bytes fit an announce reply of ``budget``."""
    if family_width <= 0:
        raise ValueError("family_width must be positive")
    return max(0, (budget - ANNOUNCE_REPLY_HEADER) // family_width)


_MAX_PEERS_V4 = max_peers(6)
_MAX_PEERS_V6 = max_peers(18)


# Client side: requests, for the tests and the load generator.


def encode_connect_request(transaction_id: int) -> bytes:
    """The 16-byte connect request."""
    return _HEADER.pack(PROTOCOL_ID, CONNECT, transaction_id)


def encode_announce_request(request: AnnounceRequestUdp) -> bytes:
    """An announce request; non-empty ``url_data`` goes in BEP 41 chunks of up to 255 bytes."""
    packed = _ANNOUNCE.pack(
        request.connection_id,
        ANNOUNCE,
        request.transaction_id,
        request.info_hash,
        request.peer_id,
        request.downloaded,
        request.left,
        request.uploaded,
        int(request.event),
        request.ip,
        request.key,
        request.num_want,
        request.port,
    )
    url_data = request.url_data
    if not url_data:
        return packed
    parts = [packed]
    for start in range(0, len(url_data), 255):
        chunk = url_data[start : start + 255]
        parts.append(bytes((OPTION_URL_DATA, len(chunk))))
        parts.append(chunk)
    return b"".join(parts)


def encode_scrape_request(
    connection_id: int, transaction_id: int, info_hashes: Sequence[bytes]
) -> bytes:
    """A scrape request for ``info_hashes`` (20 bytes each)."""
    return _HEADER.pack(connection_id, SCRAPE, transaction_id) + b"".join(info_hashes)


# Client side: replies.


@dataclass(frozen=True, slots=True)
class ConnectReply:
    """A decoded connect reply."""

    transaction_id: int
    connection_id: int


@dataclass(frozen=True, slots=True)
class AnnounceReply:
    """A decoded announce reply; ``peers`` is the raw compact list (6 or 18 bytes each)."""

    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: bytes


@dataclass(frozen=True, slots=True)
class ScrapeReply:
    """A decoded scrape reply, one :class:`SwarmCounts` per hash asked."""

    transaction_id: int
    counts: list[SwarmCounts]


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A decoded error reply."""

    transaction_id: int
    message: str


Reply: TypeAlias = ConnectReply | AnnounceReply | ScrapeReply | ErrorReply


def _reply_head(data: bytes, action: int, minimum: int) -> int:
    """Check a reply's action and length; its transaction id. Raises ValueError."""
    if len(data) < minimum:
        raise ValueError(f"reply too short: {len(data)} bytes")
    got, transaction_id = _REPLY_HEADER.unpack_from(data)
    if got != action:
        raise ValueError(f"expected action {action}, got {got}")
    return int(transaction_id)


def parse_connect_reply(data: bytes) -> ConnectReply:
    """Decode a connect reply; ValueError if it is not one."""
    _reply_head(data, CONNECT, _CONNECT_REPLY.size)
    if len(data) != _CONNECT_REPLY.size:
        raise ValueError("connect reply must be 16 bytes")
    _, transaction_id, connection_id = _CONNECT_REPLY.unpack(data)
    return ConnectReply(transaction_id, connection_id)


def parse_announce_reply(data: bytes) -> AnnounceReply:
    """Decode an announce reply; ValueError if it is not one."""
    _reply_head(data, ANNOUNCE, ANNOUNCE_REPLY_HEADER)
    if (len(data) - ANNOUNCE_REPLY_HEADER) % COMPACT_V4_LENGTH:
        raise ValueError("peer list is not a whole number of compact entries")
    _, transaction_id, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
    return AnnounceReply(
        transaction_id, interval, leechers, seeders, bytes(data[ANNOUNCE_REPLY_HEADER:])
    )


def parse_scrape_reply(data: bytes) -> ScrapeReply:
    """Decode a scrape reply; ValueError if it is not one."""
    transaction_id = _reply_head(data, SCRAPE, _REPLY_HEADER.size)
    if (len(data) - _REPLY_HEADER.size) % _SCRAPE_ENTRY.size:
        raise ValueError("scrape reply is not a whole number of entries")
    counts = [
        SwarmCounts(seeders, leechers, completed)
        for seeders, completed, leechers in _SCRAPE_ENTRY.iter_unpack(data[_REPLY_HEADER.size :])
    ]
    return ScrapeReply(transaction_id, counts)


def parse_error_reply(data: bytes) -> ErrorReply:
    """Decode an error reply; ValueError if it is not one."""
    transaction_id = _reply_head(data, ERROR, _REPLY_HEADER.size)
    message = bytes(data[_REPLY_HEADER.size :]).decode("utf-8", "replace")
    return ErrorReply(transaction_id, message)


_REPLY_PARSERS: dict[int, Callable[[bytes], Reply]] = {
    CONNECT: parse_connect_reply,
    ANNOUNCE: parse_announce_reply,
    SCRAPE: parse_scrape_reply,
    ERROR: parse_error_reply,
}


def parse_reply(data: bytes) -> Reply:
    """Decode any reply by its action; ValueError if it is none of them."""
    if len(data) < _REPLY_HEADER.size:
        raise ValueError(f"reply too short: {len(data)} bytes")
    parser = _REPLY_PARSERS.get(int.from_bytes(data[:4], "big"))
    if parser is None:
        raise ValueError("unknown action in reply")
    return parser(data)
