"""The compiled table's C API (``shoal/_native/store_api.h``), as another compiled module uses
it: the function table from the ``shoal._native_store._C_API`` capsule, the table from
``MemoryStore.native_table()``, announces and scrapes applied through the C entry points
(called here with ctypes, mirroring the header's structs) landing in the same store Python
reads, with the same outcomes and refusals."""

from __future__ import annotations

import ctypes

import pytest
from support.engines import require_engine
from support.peers import TORRENT, addr4, addr6, peer_id, request

from shoal.errors import ClientError
from shoal.storage.base import StoreSettings
from shoal.storage.memory import MemoryStore
from shoal.types import ROLE_LEECHER, ROLE_NONE, ROLE_SEEDER, Event, SwarmCounts

T0 = 1_700_000_000
u8p = ctypes.POINTER(ctypes.c_uint8)


class Request(ctypes.Structure):
    _fields_ = [
        ("info_hash", ctypes.c_char_p), ("peer_id", ctypes.c_char_p), ("addr", ctypes.c_char_p),
        ("addr_len", ctypes.c_uint32), ("key", ctypes.c_uint32), ("uploaded", ctypes.c_uint64),
        ("downloaded", ctypes.c_uint64), ("seeder", ctypes.c_int32), ("event", ctypes.c_int32),
        ("numwant", ctypes.c_int64), ("mixed_families", ctypes.c_int32),
        ("want_peer_ids", ctypes.c_int32), ("now", ctypes.c_int64),
    ]


class Outcome(ctypes.Structure):
    _fields_ = [
        ("peers4", u8p), ("peers6", u8p), ("ids4", u8p), ("ids6", u8p),
        ("n4", ctypes.c_size_t), ("n6", ctypes.c_size_t), ("seeders", ctypes.c_uint64),
        ("leechers", ctypes.c_uint64), ("completed", ctypes.c_uint64),
        ("role_before", ctypes.c_int32), ("role_after", ctypes.c_int32),
        ("counted_completed", ctypes.c_int32), ("prev_uploaded", ctypes.c_uint64),
        ("prev_downloaded", ctypes.c_uint64),
    ]


class Counts(ctypes.Structure):
    _fields_ = [("seeders", ctypes.c_uint64), ("leechers", ctypes.c_uint64),
                ("completed", ctypes.c_uint64)]


ANNOUNCE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(Request),
                            ctypes.POINTER(Outcome))
SCRAPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                          ctypes.POINTER(Counts))
REASON = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int)
RETRY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


class Api(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("size", ctypes.c_uint32), ("announce", ANNOUNCE),
                ("scrape", SCRAPE), ("reason", REASON), ("retry", RETRY)]


def capsule_pointer(capsule: object, name: bytes) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    found: int = get(capsule, name)
    return found


@pytest.fixture
def native() -> MemoryStore:
    require_engine("native")
    return MemoryStore(StoreSettings(max_peers_per_swarm=3, keep_totals=True), engine="native")


def api() -> Api:
    import shoal._native_store as module

    return Api.from_address(capsule_pointer(module._C_API, b"shoal._native_store._C_API"))


def c_request(n: int, *, v6: bool = False, left: int = 100, event: Event = Event.NONE,
              numwant: int = 50, key: int = 0, mixed: bool = False) -> Request:
    a = addr6(n) if v6 else addr4(n)
    return Request(TORRENT, peer_id(n), a, len(a), key, 10 * n, n, int(left == 0), int(event),
                   numwant, int(mixed), 1, T0)


def test_the_capsules_carry_the_api_version_and_the_table(native: MemoryStore) -> None:
    found = api()
    assert (found.version, found.size) == (1, ctypes.sizeof(Api))
    assert capsule_pointer(native.native_table(), b"shoal._native_store.table")  # type: ignore[attr-defined]
    assert found.reason(0) is None and found.retry(0) == -1
    assert found.reason(1) == b"swarm is full" and found.retry(1) == 5


def test_announces_through_c_land_in_the_store_python_reads(native: MemoryStore) -> None:
    c = api()
    table = capsule_pointer(native.native_table(), b"shoal._native_store.table")  # type: ignore[attr-defined]
    out = Outcome()
    assert c.announce(table, c_request(1, left=0), out) == 0
    assert (out.role_before, out.role_after, out.seeders, out.leechers) == (
        ROLE_NONE, ROLE_SEEDER, 1, 0)
    assert c.announce(table, c_request(2), out) == 0
    # the new leecher is sent the seeder, with its id, as the bytes a reply carries
    assert out.n4 == 1 and bytes(out.peers4[:6]) == addr4(1)
    assert bytes(out.ids4[:20]) == peer_id(1) and out.n6 == 0
    assert c.announce(table, c_request(2, event=Event.STOPPED), out) == 0
    assert (out.role_before, out.role_after, out.prev_uploaded) == (ROLE_LEECHER, ROLE_NONE, 20)
    assert native.scrape([TORRENT]) == [SwarmCounts(1, 0, 0)]
    counts = Counts()
    assert c.scrape(table, TORRENT, counts) == 1
    assert (counts.seeders, counts.leechers, counts.completed) == (1, 0, 0)
    assert c.scrape(table, b"\x00" * 20, counts) == 0 and counts.seeders == 0
    # and what Python announces, C sees
    native.announce(request(3, v6=True), T0)
    assert c.announce(table, c_request(4, v6=True, mixed=True), out) == 0
    assert (out.n4, out.n6) == (1, 1) and bytes(out.peers6[:18]) == addr6(3)


def test_a_refusal_through_c_is_the_one_python_raises(native: MemoryStore) -> None:
    c = api()
    table = capsule_pointer(native.native_table(), b"shoal._native_store.table")  # type: ignore[attr-defined]
    out = Outcome()
    for n in range(3):
        assert c.announce(table, c_request(n), out) == 0
    status = c.announce(table, c_request(9), out)
    assert status == 1 and c.reason(status) == b"swarm is full"
    with pytest.raises(ClientError, match="swarm is full"):
        native.announce(request(9), T0)
    bad = c_request(1)
    bad.addr_len = 5
    assert c.announce(table, bad, out) == 5  # SHOAL_BAD_REQUEST: nothing read past it
    assert native.scrape([TORRENT]) == [SwarmCounts(0, 3, 0)]
