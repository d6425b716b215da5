"""The WebTorrent message codec: golden messages as the reference clients send and read
them, round trips, and hostile JSON."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.protocol.ws import (
    UNKNOWN_LEFT,
    Offer,
    WsAnnounce,
    WsMessageError,
    WsScrape,
    decode_message,
    encode_announce,
    encode_announce_reply,
    encode_answer,
    encode_error,
    encode_offer,
    encode_scrape,
    encode_scrape_reply,
)
from shoal.types import Event, SwarmCounts

IH = bytes(range(0xF0, 0x100)) + bytes(range(4))  # bytes above 0x7f too, as characters
PID = b"-WW0207-" + bytes(range(12))
IH_TEXT = IH.decode("latin-1")
PID_TEXT = PID.decode("latin-1")


def decode(message: object, max_offers: int = 10, max_hashes: int = 64) -> object:
    return decode_message(json.dumps(message), max_offers, max_hashes)


def test_a_reference_client_announce_with_offers_decodes() -> None:
    # What bittorrent-tracker's WebSocket client sends (JSON.stringify of its params).
    message = ('{"action":"announce","info_hash":' + json.dumps(IH_TEXT) + ',"peer_id":'
               + json.dumps(PID_TEXT) + ',"numwant":2,"uploaded":0,"downloaded":0,'
               '"left":1000,"event":"started","offers":[{"offer":{"type":"offer","sdp":"v=0"},'
               '"offer_id":"abcdefghijklmnopqrst"}]}')
    assert decode_message(message, 10, 64) == WsAnnounce(
        IH, PID, 0, 0, 1000, Event.STARTED, 2,
        (Offer(b"abcdefghijklmnopqrst", {"type": "offer", "sdp": "v=0"}),))


def test_an_answer_decodes_with_its_target_and_offer_id() -> None:
    found = decode({"action": "announce", "info_hash": IH_TEXT, "peer_id": PID_TEXT,
                    "to_peer_id": "t" * 20, "answer": {"type": "answer", "sdp": "x"},
                    "offer_id": "o" * 20})
    assert isinstance(found, WsAnnounce)
    assert (found.to_peer_id, found.offer_id) == (b"t" * 20, b"o" * 20)
    assert found.answer == {"type": "answer", "sdp": "x"}


def test_left_null_or_absent_means_unknown_and_a_leecher() -> None:
    base = {"action": "announce", "info_hash": IH_TEXT, "peer_id": PID_TEXT}
    assert decode(base).left == UNKNOWN_LEFT  # type: ignore[attr-defined]
    assert decode({**base, "left": None}).left == UNKNOWN_LEFT  # type: ignore[attr-defined]


def test_scrape_takes_one_hash_as_a_string_or_several_as_a_list() -> None:
    assert decode({"action": "scrape", "info_hash": IH_TEXT}) == WsScrape((IH,))
    assert decode({"action": "scrape", "info_hash": [IH_TEXT, "a" * 20]}) == WsScrape(
        (IH, b"a" * 20))


def test_golden_replies() -> None:
    assert encode_announce_reply(b"a" * 20, SwarmCounts(3, 4, 5), 120) == (
        '{"action":"announce","interval":120,"info_hash":"aaaaaaaaaaaaaaaaaaaa",'
        '"complete":3,"incomplete":4}')
    assert encode_scrape_reply([(b"a" * 20, SwarmCounts(1, 2, 3))]) == (
        '{"action":"scrape","files":{"aaaaaaaaaaaaaaaaaaaa":'
        '{"complete":1,"incomplete":2,"downloaded":3}}}')
    assert encode_error("bad", "announce", b"\xff" * 20) == (
        '{"action":"announce","failure reason":"bad","info_hash":"' + "\\u00ff" * 20 + '"}')


def test_a_relayed_offer_names_the_sender_and_the_offer_id() -> None:
    sent = json.loads(encode_offer(IH, PID, Offer(b"o" * 20, {"type": "offer", "sdp": "s"})))
    assert sent == {"action": "announce", "info_hash": IH_TEXT, "peer_id": PID_TEXT,
                    "offer_id": "o" * 20, "offer": {"type": "offer", "sdp": "s"}}
    back = json.loads(encode_answer(IH, PID, b"o" * 20, {"type": "answer", "sdp": "a"}))
    assert back["answer"] == {"type": "answer", "sdp": "a"} and back["peer_id"] == PID_TEXT


@pytest.mark.parametrize("message, reason", [
    ("", "message is not JSON"),
    ("{", "message is not JSON"),
    (b"\xff\xfe", "message is not JSON"),
    ("[" * 50000 + "]" * 50000, "message is not JSON"),
    ('{"action":"announce","left":' + "9" * 5000 + "}", "message is not JSON"),
    ("null", "message must be a JSON object"),
    ('"announce"', "message must be a JSON object"),
    ('{"action":1}', "unknown action: expected announce or scrape"),
    ('{"action":"announce"}', "info_hash must be a string of 20 characters"),
    ('{"action":"announce","info_hash":"' + "\\u0100" * 20 + '","peer_id":"x"}',
     "info_hash must be 20 bytes (characters up to \\u00ff)"),
])
def test_hostile_json_is_refused_with_a_reason(message: str | bytes, reason: str) -> None:
    with pytest.raises(WsMessageError) as refused:
        decode_message(message, 10, 64)
    assert refused.value.reason == reason


@pytest.mark.parametrize("field, value, reason", [
    ("left", -1, "left out of range"),
    ("left", 1.5, "left must be a whole number"),
    ("uploaded", "10", "uploaded must be a number"),
    ("downloaded", True, "downloaded must be a number"),
    ("uploaded", float("nan"), "uploaded must be a whole number"),
    ("event", "paused", "event must be started, stopped, completed or update"),
    ("numwant", -5, "numwant must be a whole number"),
    ("offers", {"a": 1}, "offers must be a list"),
    ("offers", [{"offer_id": "x" * 20}], "each offer must be an object with an offer"),
    ("offers", [{"offer": {}, "offer_id": "short"}], "offer_id must be a string of 20 characters"),
    ("answer", "sdp", "answer must be an object"),
])
def test_a_bad_field_is_refused_naming_it_and_the_torrent(field: str, value: object,
                                                           reason: str) -> None:
    message = {"action": "announce", "info_hash": IH_TEXT, "peer_id": PID_TEXT, field: value}
    with pytest.raises(WsMessageError) as refused:
        decode_message(json.dumps(message), 10, 64)
    assert refused.value.reason == reason
    assert refused.value.info_hash == IH


def test_offers_and_scrape_hashes_beyond_their_caps_are_refused() -> None:
    offers = [{"offer": {"sdp": "x"}, "offer_id": "o" * 20}] * 3
    with pytest.raises(WsMessageError, match="too many offers"):
        decode({"action": "announce", "info_hash": IH_TEXT, "peer_id": PID_TEXT,
                "offers": offers}, max_offers=2)
    with pytest.raises(WsMessageError, match="too many info_hashes"):
        decode({"action": "scrape", "info_hash": ["a" * 20] * 3}, max_hashes=2)


ids = st.binary(min_size=20, max_size=20)
figures = st.integers(0, (1 << 63) - 1)
sdp = st.dictionaries(st.sampled_from(["type", "sdp"]), st.text(max_size=40), max_size=2)


@given(ids, ids, figures, figures, figures, st.sampled_from(list(Event)[:4]),
       st.integers(-1, 50), st.lists(st.builds(Offer, ids, sdp), max_size=10))
def test_announce_round_trips(info_hash: bytes, peer_id: bytes, up: int, down: int,
                              left: int, event: Event, numwant: int,
                              offers: list[Offer]) -> None:
    message = WsAnnounce(info_hash, peer_id, up, down, left, event, numwant, tuple(offers))
    assert decode_message(encode_announce(message), 10, 64) == message


@given(ids, ids, sdp, ids, ids)
def test_answer_round_trips(info_hash: bytes, peer_id: bytes, answer: dict[str, str],
                            to_peer_id: bytes, offer_id: bytes) -> None:
    message = WsAnnounce(info_hash, peer_id, answer=answer, to_peer_id=to_peer_id,
                         offer_id=offer_id)
    assert decode_message(encode_announce(message), 10, 64) == message


@given(st.lists(ids, max_size=64))
def test_scrape_round_trips(hashes: list[bytes]) -> None:
    assert decode_message(encode_scrape(WsScrape(tuple(hashes))), 10, 64) == WsScrape(
        tuple(hashes))


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_text_decodes_or_is_refused_never_crashes(data: str | bytes) -> None:
    with contextlib.suppress(WsMessageError):
        decode_message(data, 10, 64)
