"""HTTP announce and scrape: query parsing and bencoded replies (BEP 3, 7, 23, 24, 31, 48).

Queries are decoded as raw bytes, never through ``str``: ``info_hash`` and ``peer_id`` are
arbitrary 20-byte values. ``+`` stays byte 0x2B (as opentracker and aquatic read it), since a
literal ``+`` is legal in a query and clients do not form-encode spaces. Replies are built by
joining pre-encoded pieces rather than through a general bencoder, because this is the
announce hot path.
"""

from __future__ import annotations

import binascii
import ipaddress
import zlib
from collections.abc import Sequence

from shoal.errors import ClientError
from shoal.protocol.compact import normalize_ip, pack_address
from shoal.types import (
    INFO_HASH_LENGTH,
    PEER_ID_LENGTH,
    AnnounceRequest,
    AnnounceResult,
    Event,
    SwarmCounts,
)

_HEX_DIGITS = b"0123456789abcdefABCDEF"
_HEX = frozenset(_HEX_DIGITS)
_MAX_INT = 2**64 - 1
_MAX_NUMWANT = 2**31 - 1
_EVENTS = {
    b"": Event.NONE,
    b"started": Event.STARTED,
    b"stopped": Event.STOPPED,
    b"completed": Event.COMPLETED,
    b"paused": Event.PAUSED,
}


def percent_decode(value: bytes, name: str = "query") -> bytes:
    """Decode %XX escapes into raw bytes; a truncated or non-hex escape is an error.

    ``+`` is kept as 0x2B on purpose (see the module docstring).
    """
    if b"%" not in value:
        return value
    if b"=" not in value and b"\n" not in value and b"\r" not in value:
        # Fast path, in C: quoted-printable decoding reads =XX escapes. Every escape was
        # valid exactly when each one shrank the value by two bytes. (Without CR or LF,
        # since '=' before a line break is a QP soft break that would hide a bad escape.)
        decoded = binascii.a2b_qp(value.replace(b"%", b"="))
        if len(decoded) == len(value) - 2 * value.count(b"%"):
            return decoded
    parts = value.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise ClientError(f"malformed percent-escape in {name}")
        out.append(bytes.fromhex(part[:2].decode("ascii")))
        out.append(part[2:])
    return b"".join(out)


def parse_query(query: bytes) -> list[tuple[bytes, bytes]]:
    """Split ``a=1&b=2`` into decoded (key, value) pairs, keeping repeats and order."""
    pairs = []
    for item in query.split(b"&"):
        if not item:
            continue
        key, _, value = item.partition(b"=")
        pairs.append((percent_decode(key), percent_decode(value, key.decode("latin-1"))))
    return pairs


def _uint(value: bytes, name: str) -> int:
    if not value.isdigit() or len(value) > 20:
        raise ClientError(f"{name} must be a non-negative integer")
    number = int(value)
    if number > _MAX_INT:
        raise ClientError(f"{name} is out of range")
    return number


def key_to_int(key: bytes) -> int:
    """BEP 7's ``key`` as 32 bits: the value itself when it is 1-8 hex digits (what clients
    send), else a CRC-32 of it, so HTTP and UDP keys compare alike."""
    if 0 < len(key) <= 8 and not key.translate(None, _HEX_DIGITS):
        return int(key, 16)
    return zlib.crc32(key)


def _ip_param(value: bytes, want_v6: bool | None) -> bytes | None:
    text = value.decode("latin-1").strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # ipv4 with a port
        text = text.split(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if want_v6 is not None and (ip.version == 6) != want_v6:
        return None
    return normalize_ip(ip.packed)


def parse_announce(
    query: bytes, peer_ip: bytes, allow_ip_param: bool = False, path: bytes = b""
) -> tuple[AnnounceRequest, bool]:
    """Parse an announce query; return the request and whether the reply is compact.

    ``peer_ip`` is the packed address the connection came from (4 or 16 bytes); with
    ``allow_ip_param`` a valid ``ip``, ``ipv4`` or ``ipv6`` parameter replaces it.
    Raises :class:`ClientError` naming the offending parameter.
    """
    # The last of repeated keys wins. split() makes the pairs in C; an item with no "="
    # (or an empty one, from "&&") is not a pair, so dict() refuses it, and the query is
    # read again item by item. (Measured: 30-40% faster than partitioning every item, and
    # than a regex findall.)
    try:
        params = dict([item.split(b"=", 1) for item in query.split(b"&")])
    except ValueError:
        params = dict([item.partition(b"=")[::2] for item in query.split(b"&")])
    get = params.get
    raw = get(b"info_hash")
    if raw is None:
        raise ClientError("missing info_hash")
    info_hash = percent_decode(raw, "info_hash")
    if len(info_hash) != INFO_HASH_LENGTH:
        raise ClientError("info_hash must be 20 bytes")
    raw = get(b"peer_id")
    if raw is None:
        raise ClientError("missing peer_id")
    peer_id = percent_decode(raw, "peer_id")
    if len(peer_id) != PEER_ID_LENGTH:
        raise ClientError("peer_id must be 20 bytes")
    raw = get(b"port")
    if raw is None:
        raise ClientError("missing port")
    # Up to 19 digits is always below 2**64: int() at once, _uint() (and its errors) else.
    port = int(raw) if raw.isdigit() and len(raw) < 20 else _uint(raw, "port")
    if not 0 < port < 65536:
        raise ClientError("port must be 1 to 65535")
    raw = get(b"uploaded")
    if raw is None:
        raise ClientError("missing uploaded")
    uploaded = int(raw) if raw.isdigit() and len(raw) < 20 else _uint(raw, "uploaded")
    raw = get(b"downloaded")
    if raw is None:
        raise ClientError("missing downloaded")
    downloaded = int(raw) if raw.isdigit() and len(raw) < 20 else _uint(raw, "downloaded")
    raw = get(b"left")
    if raw is None:
        raise ClientError("missing left")
    left = int(raw) if raw.isdigit() and len(raw) < 20 else _uint(raw, "left")
    raw = get(b"event")
    event = Event.NONE if raw is None else _EVENTS.get(raw, Event.NONE)
    compact = get(b"compact") != b"0"
    numwant = -1
    raw = get(b"numwant")
    if raw is not None:
        text = raw[1:] if raw[:1] == b"-" else raw
        if not text.isdigit():
            raise ClientError("numwant must be an integer")
        # A huge value is capped (by the policy), not refused; keep int() cheap.
        numwant = int(raw) if len(text) <= 10 else (-1 if raw[:1] == b"-" else _MAX_NUMWANT)
    raw = get(b"key")
    key = None if raw is None else key_to_int(percent_decode(raw, "key"))
    no_peer_id = get(b"no_peer_id") == b"1"
    ip_override: bytes | None = None
    if allow_ip_param and (b"ip" in params or b"ipv4" in params or b"ipv6" in params):
        for item in query.split(b"&"):
            name, _, value = item.partition(b"=")
            if name in (b"ip", b"ipv4", b"ipv6"):
                want = None if name == b"ip" else name == b"ipv6"
                found = _ip_param(percent_decode(value, name.decode()), want)
                if found is not None and (ip_override is None or len(found) == len(peer_ip)):
                    ip_override = found
    ip = ip_override if ip_override is not None else peer_ip
    # Positional, in the order of AnnounceRequest's fields: keywords cost about a
    # microsecond more per announce (measured).
    request = AnnounceRequest(
        info_hash, peer_id, pack_address(ip, port), uploaded, downloaded, left, event,
        numwant, key, True, not compact and not no_peer_id, path,
    )  # fmt: skip
    return request, compact


def parse_scrape(query: bytes, max_hashes: int) -> list[bytes]:
    """The ``info_hash`` values of a scrape query (none means a full scrape)."""
    hashes: list[bytes] = []
    for item in query.split(b"&"):
        name, _, raw = item.partition(b"=")
        if name == b"info_hash":
            value = percent_decode(raw, "info_hash")
            if len(value) != INFO_HASH_LENGTH:
                raise ClientError("info_hash must be 20 bytes")
            if len(hashes) >= max_hashes:
                raise ClientError(f"too many info_hash values (at most {max_hashes})")
            hashes.append(value)
    return hashes


def scrape_path(announce_path: bytes) -> bytes | None:
    """BEP 48: the scrape path is the announce path with its last ``announce`` segment
    replaced by ``scrape``; ``None`` when the path has no such segment."""
    head, slash, last = announce_path.rpartition(b"/")
    if not last.startswith(b"announce"):
        return None
    return head + slash + b"scrape" + last[len(b"announce") :]


def _bstr(value: bytes) -> bytes:
    return b"%d:%s" % (len(value), value)


def encode_failure(reason: str, retry_in: int | str | None = None) -> bytes:
    """``d14:failure reason...e`` with BEP 31's ``retry in`` when given."""
    out = [b"d14:failure reason", _bstr(reason.encode())]
    if retry_in is not None:
        out.append(b"8:retry in")
        out.append(b"i%de" % retry_in if isinstance(retry_in, int) else _bstr(retry_in.encode()))
    out.append(b"e")
    return b"".join(out)


def _ip_text(packed: bytes) -> bytes:
    """A packed address as text: IPv4 formatted directly (this runs for every peer of a
    ``compact=0`` reply: ``ipaddress`` took most of such a reply's time), IPv6 by
    ``ipaddress`` (its compressed form has rules worth not writing again)."""
    if len(packed) == 4:
        return b"%d.%d.%d.%d" % (packed[0], packed[1], packed[2], packed[3])
    return str(ipaddress.IPv6Address(packed)).encode()


def _dict_peers(addrs: bytes, ids: bytes, width: int) -> list[bytes]:
    out = []
    for i in range(len(addrs) // width):
        entry = addrs[i * width : (i + 1) * width]
        ip = _ip_text(entry[:-2])
        port = (entry[-2] << 8) | entry[-1]
        if ids:
            out.append(b"d2:ip%d:%s7:peer id20:%s4:porti%dee"
                       % (len(ip), ip, ids[i * 20 : (i + 1) * 20], port))
        else:
            out.append(b"d2:ip%d:%s4:porti%dee" % (len(ip), ip, port))
    return out


# The reply up to the peers' value, then (compact) "<length>:" and the IPv4 peers, the
# peers6 entry, the warning entry, or (not compact) the list of peer dicts and the warning.
_REPLY_HEAD = (
    b"d8:completei%de10:downloadedi%de11:external ip%d:%s"
    b"10:incompletei%de8:intervali%de12:min intervali%de5:peers"
)
_COMPACT_REPLY = _REPLY_HEAD + b"%d:%s%s%se"
_DICT_REPLY = _REPLY_HEAD + b"l%se%se"


def encode_announce(
    result: AnnounceResult, compact: bool, external_ip: bytes, warning: str | None = None
) -> bytes:
    """The announce reply. Keys in bencode's sorted order; ``peers`` is always present (some
    clients fail without it); ``peers6`` only when there are IPv6 peers; ``external ip`` is
    BEP 24's packed requester address. (One format of a template per reply: measured about
    a third cheaper than joining a list of pieces, on the hot path.)"""
    tail = b"15:warning message" + _bstr(warning.encode()) if warning else b""
    if compact:
        peers6 = result.peers6
        return _COMPACT_REPLY % (
            result.complete, result.downloaded, len(external_ip), external_ip,
            result.incomplete, result.interval, result.min_interval,
            len(result.peers4), result.peers4,
            b"6:peers6%d:%s" % (len(peers6), peers6) if peers6 else b"", tail,
        )  # fmt: skip
    peers = b"".join([*_dict_peers(result.peers4, result.peer_ids4, 6),
                      *_dict_peers(result.peers6, result.peer_ids6, 18)])
    return _DICT_REPLY % (
        result.complete, result.downloaded, len(external_ip), external_ip,
        result.incomplete, result.interval, result.min_interval, peers, tail,
    )  # fmt: skip


def encode_scrape(hashes: Sequence[bytes], counts: Sequence[SwarmCounts]) -> bytes:
    """``files`` -> {info_hash: {complete, downloaded, incomplete}} (BEP 48), hashes sorted
    and each listed once however often it was asked for."""
    entries = sorted(dict(zip(hashes, counts, strict=True)).items())
    return b"d5:filesd" + encode_scrape_entries(entries) + b"ee"


SCRAPE_HEAD = b"d5:filesd"
SCRAPE_TAIL = b"ee"
SCRAPE_KEY_LENGTH = 23
"""Bytes at the start of an encoded entry that name its torrent (``20:`` and the hash), so
encoded entries sort, and compare for repeats, as their hashes do."""


def encode_scrape_entry(info_hash: bytes, counts: SwarmCounts) -> bytes:
    """One torrent of a scrape's ``files`` dict, as bytes that sort by info_hash."""
    return b"20:%sd8:completei%de10:downloadedi%de10:incompletei%dee" % (
        info_hash, counts.complete, counts.downloaded, counts.incomplete)


def encode_scrape_entries(entries: Sequence[tuple[bytes, SwarmCounts]]) -> bytes:
    """The inside of a scrape's ``files`` dict for ``entries`` already sorted by hash and
    without repeats; a full scrape is built from encoded entries between ``SCRAPE_HEAD``
    and ``SCRAPE_TAIL``."""
    return b"".join([encode_scrape_entry(info_hash, c) for info_hash, c in entries])
