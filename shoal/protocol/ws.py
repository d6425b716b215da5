"""WebTorrent tracker messages (JSON over WebSocket): text in, records out, and back.

Browsers cannot reach TCP or UDP peers, so a WebTorrent client asks the tracker to relay
WebRTC offers to other peers of the swarm, and their answers back. A client sends:

- ``announce``: ``info_hash``, ``peer_id``, the transfer figures, an ``event``, and
  ``offers`` (each an ``offer`` object with an ``offer_id``) for the tracker to hand, one
  each, to other peers of the swarm;
- ``announce`` carrying an ``answer`` to an offer it was handed, with ``to_peer_id`` (the
  offerer) and the ``offer_id``;
- ``scrape`` for one hash (a string) or several (a list).

``info_hash``, ``peer_id``, ``to_peer_id`` and ``offer_id`` are 20-character strings whose
characters are the bytes (``\\u0000``-``\\u00ff``, as the reference clients send them); they
become 20-byte ``bytes`` here. Pure: no IO, no clock.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from shoal.errors import ClientError
from shoal.types import Event, SwarmCounts

ID_LENGTH = 20
ANNOUNCE = "announce"
SCRAPE = "scrape"
_EVENTS = {
    None: Event.NONE,
    "update": Event.NONE,
    "started": Event.STARTED,
    "stopped": Event.STOPPED,
    "completed": Event.COMPLETED,
}
_EVENT_NAMES = {Event.STARTED: "started", Event.STOPPED: "stopped",
                Event.COMPLETED: "completed"}
UNKNOWN_LEFT = 1 << 53  # ``left`` absent or null (the reference client's "Infinity"): leecher
_MAX_FIGURE = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Offer:
    """A WebRTC offer to relay: its id and the offer object, passed on as it came."""

    offer_id: bytes
    offer: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WsAnnounce:
    """An ``announce`` message. ``answer`` (with ``to_peer_id`` and ``offer_id``) is set
    when it answers an offer; ``left`` is :data:`UNKNOWN_LEFT` when the client did not say."""

    info_hash: bytes
    peer_id: bytes
    uploaded: int = 0
    downloaded: int = 0
    left: int = UNKNOWN_LEFT
    event: Event = Event.NONE
    numwant: int = -1
    offers: tuple[Offer, ...] = ()
    answer: dict[str, Any] | None = None
    to_peer_id: bytes | None = None
    offer_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class WsScrape:
    """A ``scrape`` message: the hashes asked for (none: every torrent)."""

    info_hashes: tuple[bytes, ...] = field(default_factory=tuple)


class WsMessageError(ClientError):
    """A message that cannot be served: the reason, and what to say it was about (the
    ``action`` and ``info_hash`` the reply carries, when they could be read)."""

    def __init__(self, reason: str, action: str = ANNOUNCE, info_hash: bytes | None = None):
        super().__init__(reason)
        self.action = action
        self.info_hash = info_hash


def _binary(value: object, name: str, action: str, info_hash: bytes | None = None) -> bytes:
    if not isinstance(value, str) or len(value) != ID_LENGTH:
        raise WsMessageError(f"{name} must be a string of 20 characters", action, info_hash)
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise WsMessageError(f"{name} must be 20 bytes (characters up to \\u00ff)", action,
                             info_hash) from None


def _figure(message: dict[str, Any], name: str, info_hash: bytes, default: int = 0) -> int:
    value = message.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WsMessageError(f"{name} must be a number", ANNOUNCE, info_hash)
    if isinstance(value, float):
        if math.isinf(value) and value > 0 and name == "left":
            return default
        if not math.isfinite(value) or value != int(value):
            raise WsMessageError(f"{name} must be a whole number", ANNOUNCE, info_hash)
        value = int(value)
    if not 0 <= value <= _MAX_FIGURE:
        raise WsMessageError(f"{name} out of range", ANNOUNCE, info_hash)
    return value


def decode_message(data: str | bytes, max_offers: int, max_hashes: int) -> WsAnnounce | WsScrape:
    """The record for one client message, or :class:`WsMessageError` saying what is wrong.
    More than ``max_offers`` offers or ``max_hashes`` scrape hashes are refused."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        raise WsMessageError("message is not JSON") from None
    if not isinstance(message, dict):
        raise WsMessageError("message must be a JSON object")
    action = message.get("action")
    if action == SCRAPE:
        return _decode_scrape(message, max_hashes)
    if action != ANNOUNCE:
        raise WsMessageError("unknown action: expected announce or scrape")
    info_hash = _binary(message.get("info_hash"), "info_hash", ANNOUNCE)
    peer_id = _binary(message.get("peer_id"), "peer_id", ANNOUNCE, info_hash)
    event_name = message.get("event")
    if not isinstance(event_name, str | None) or event_name not in _EVENTS:
        raise WsMessageError("event must be started, stopped, completed or update", ANNOUNCE,
                             info_hash)
    numwant = message.get("numwant")
    if numwant is None:
        numwant = -1
    elif isinstance(numwant, bool) or not isinstance(numwant, int) or numwant < 0:
        raise WsMessageError("numwant must be a whole number", ANNOUNCE, info_hash)
    offers = message.get("offers")
    decoded: tuple[Offer, ...] = ()
    if offers is not None:
        if not isinstance(offers, list):
            raise WsMessageError("offers must be a list", ANNOUNCE, info_hash)
        if len(offers) > max_offers:
            raise WsMessageError(f"too many offers (at most {max_offers})", ANNOUNCE, info_hash)
        decoded = tuple(_offer(o, info_hash) for o in offers)
    answer = message.get("answer")
    to_peer_id = offer_id = None
    if answer is not None:
        if not isinstance(answer, dict):
            raise WsMessageError("answer must be an object", ANNOUNCE, info_hash)
        to_peer_id = _binary(message.get("to_peer_id"), "to_peer_id", ANNOUNCE, info_hash)
        offer_id = _binary(message.get("offer_id"), "offer_id", ANNOUNCE, info_hash)
    return WsAnnounce(
        info_hash, peer_id,
        _figure(message, "uploaded", info_hash), _figure(message, "downloaded", info_hash),
        _figure(message, "left", info_hash, UNKNOWN_LEFT), _EVENTS[event_name],
        min(numwant, _MAX_FIGURE), decoded, answer, to_peer_id, offer_id,
    )


def _offer(item: object, info_hash: bytes) -> Offer:
    if not isinstance(item, dict) or not isinstance(item.get("offer"), dict):
        raise WsMessageError("each offer must be an object with an offer", ANNOUNCE, info_hash)
    return Offer(_binary(item.get("offer_id"), "offer_id", ANNOUNCE, info_hash), item["offer"])


def _decode_scrape(message: dict[str, Any], max_hashes: int) -> WsScrape:
    hashes = message.get("info_hash")
    if hashes is None:
        return WsScrape(())
    if isinstance(hashes, str):
        hashes = [hashes]
    if not isinstance(hashes, list):
        raise WsMessageError("info_hash must be a string or a list of strings", SCRAPE)
    if len(hashes) > max_hashes:
        raise WsMessageError(f"too many info_hashes (at most {max_hashes})", SCRAPE)
    return WsScrape(tuple(_binary(h, "info_hash", SCRAPE) for h in hashes))


# -- encoding ----------------------------------------------------------------------------------


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def encode_announce(message: WsAnnounce) -> str:
    """A client's announce message (what a client sends: for tests and load generators)."""
    out: dict[str, Any] = {
        "action": ANNOUNCE, "info_hash": _text(message.info_hash),
        "peer_id": _text(message.peer_id), "uploaded": message.uploaded,
        "downloaded": message.downloaded,
    }
    if message.left != UNKNOWN_LEFT:
        out["left"] = message.left
    if message.event in _EVENT_NAMES:
        out["event"] = _EVENT_NAMES[message.event]
    if message.numwant >= 0:
        out["numwant"] = message.numwant
    if message.offers:
        out["offers"] = [{"offer": o.offer, "offer_id": _text(o.offer_id)}
                         for o in message.offers]
    if message.answer is not None:
        assert message.to_peer_id is not None and message.offer_id is not None
        out["answer"] = message.answer
        out["to_peer_id"] = _text(message.to_peer_id)
        out["offer_id"] = _text(message.offer_id)
    return _dump(out)


def encode_scrape(message: WsScrape) -> str:
    """A client's scrape message."""
    return _dump({"action": SCRAPE, "info_hash": [_text(h) for h in message.info_hashes]})


def encode_announce_reply(info_hash: bytes, counts: SwarmCounts, interval: int) -> str:
    """The tracker's answer to an announce."""
    return _dump({"action": ANNOUNCE, "interval": interval, "info_hash": _text(info_hash),
                  "complete": counts.complete, "incomplete": counts.incomplete})


def encode_offer(info_hash: bytes, from_peer_id: bytes, offer: Offer) -> str:
    """An offer relayed to a peer: who offers, and the id its answer must carry."""
    return _dump({"action": ANNOUNCE, "info_hash": _text(info_hash),
                  "peer_id": _text(from_peer_id), "offer_id": _text(offer.offer_id),
                  "offer": offer.offer})


def encode_answer(info_hash: bytes, from_peer_id: bytes, offer_id: bytes,
                  answer: dict[str, Any]) -> str:
    """An answer relayed back to the peer that made the offer."""
    return _dump({"action": ANNOUNCE, "info_hash": _text(info_hash),
                  "peer_id": _text(from_peer_id), "offer_id": _text(offer_id),
                  "answer": answer})


def encode_scrape_reply(files: list[tuple[bytes, SwarmCounts]]) -> str:
    """The tracker's answer to a scrape."""
    return _dump({"action": SCRAPE, "files": {
        _text(h): {"complete": c.complete, "incomplete": c.incomplete,
                   "downloaded": c.downloaded} for h, c in files}})


def encode_error(reason: str, action: str = ANNOUNCE, info_hash: bytes | None = None) -> str:
    """A refusal, as the reference clients read it (``failure reason``)."""
    out: dict[str, Any] = {"action": action, "failure reason": reason}
    if info_hash is not None:
        out["info_hash"] = _text(info_hash)
    return _dump(out)
