"""The SQLite state database: snapshots of the in-memory store, completed counts, the UDP
secret, and what it does with a database it cannot trust."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.swarm_state import (
    LARGE,
    NO_PEERS,
    SMALL,
    T0,
    V6_ONLY,
    addr,
    check_index,
    images_of,
    info_hash,
    populated_store,
    request,
    store_state,
)

from shoal.storage.base import StoreSettings
from shoal.storage.memory import MemoryStore, SwarmImage
from shoal.storage.sqlite import (
    DB_NAME,
    SCHEMA_VERSION,
    NewerSchemaError,
    SqliteState,
    StateError,
)
from shoal.types import ROLE_LEECHER, ROLE_SEEDER, Event


def saved_and_loaded(store: MemoryStore, data_dir: Path) -> MemoryStore:
    """Snapshot ``store`` into ``data_dir``, reopen the database, restore a fresh store."""
    state = SqliteState(data_dir)
    state.write_snapshot(images_of(store), T0 + 100)
    state.close()
    state = SqliteState(data_dir)
    loaded = MemoryStore(StoreSettings(keep_totals=True), engine="python")
    _, images = state.read_snapshot()
    for image in images:
        loaded.restore(image)
    state.close()
    return loaded


def raw(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / DB_NAME, isolation_level=None)


# -- snapshots -------------------------------------------------------------------------


def test_snapshot_round_trip_restores_every_peer_entry_exactly(tmp_path: Path) -> None:
    store = populated_store()
    loaded = saved_and_loaded(store, tmp_path)
    assert store_state(loaded) == store_state(store)
    assert loaded.order == store.order
    assert loaded.totals() == store.totals()


def test_snapshot_records_when_it_was_taken_and_every_torrent(tmp_path: Path) -> None:
    store = populated_store()
    state = SqliteState(tmp_path)
    assert state.write_snapshot(iter(images_of(store)), T0 + 100) == len(store.swarms)
    taken_at, images = state.read_snapshot()
    assert taken_at == T0 + 100
    assert [image.info_hash for image in images] == store.order


def test_torrent_without_peers_keeps_its_completed_count(tmp_path: Path) -> None:
    loaded = saved_and_loaded(populated_store(), tmp_path)
    swarm = loaded.swarms[NO_PEERS]
    assert len(swarm) == 0
    assert swarm.completed == 1


def test_restored_large_families_are_indexed(tmp_path: Path) -> None:
    loaded = saved_and_loaded(populated_store(), tmp_path)
    for swarm in loaded.swarms.values():
        for fam in (swarm.v4, swarm.v6):
            if fam is not None:
                check_index(fam)
    large = loaded.swarms[LARGE]
    assert large.v4 is not None and large.v4.by_addr is not None
    assert large.v6 is not None and large.v6.by_addr is not None


def test_restored_peer_re_announcing_is_the_same_peer(tmp_path: Path) -> None:
    store = populated_store()
    loaded = saved_and_loaded(store, tmp_path)
    before = loaded.totals()
    result = loaded.announce(request(SMALL, 0, left=0, key=0xABC0, uploaded=2**40 + 5),
                             T0 + 200)
    assert result.role_before == ROLE_SEEDER
    assert (result.prev_uploaded, result.prev_downloaded) == (2**40, 2**33)
    assert loaded.totals() == before
    large = loaded.announce(request(LARGE, 121, left=5), T0 + 200)
    assert large.role_before == ROLE_LEECHER
    assert loaded.totals() == before


def test_restored_completion_is_not_counted_twice(tmp_path: Path) -> None:
    loaded = saved_and_loaded(populated_store(), tmp_path)
    again = loaded.announce(request(SMALL, 0, left=0, key=0xABC0, event=Event.COMPLETED),
                            T0 + 200)
    assert not again.completed
    assert loaded.swarms[SMALL].completed == 1


def test_restored_key_still_moves_its_entry_and_only_it(tmp_path: Path) -> None:
    loaded = saved_and_loaded(populated_store(), tmp_path)
    wrong = dataclasses.replace(request(SMALL, 1, key=0x1234), addr=addr(998))
    loaded.announce(wrong, T0 + 200)  # another peer, not a move
    assert len(loaded.swarms[SMALL]) == 6
    moved = dataclasses.replace(request(SMALL, 1, key=0xABC1), addr=addr(999))
    loaded.announce(moved, T0 + 201)
    fam = loaded.swarms[SMALL].v4
    assert fam is not None and len(fam) == 6
    assert fam.find_addr(addr(999)) >= 0 and fam.find_addr(addr(1)) < 0


def test_new_peer_after_restore_is_given_the_restored_peers(tmp_path: Path) -> None:
    store = populated_store()
    loaded = saved_and_loaded(store, tmp_path)
    fam = store.swarms[LARGE].v4
    assert fam is not None
    everyone = {fam.addr(slot) for slot in range(len(fam))}
    result = loaded.announce(request(LARGE, 10_000, numwant=1000), T0 + 200)
    assert result.new_peer
    got = {result.peers4[i : i + 6] for i in range(0, len(result.peers4), 6)}
    assert got == everyone
    assert addr(10_000) not in got
    v6 = loaded.announce(request(V6_ONLY, 10_001, v6=True, numwant=1000), T0 + 200)
    assert len(v6.peers6) == 3 * 18


def test_snapshot_replaces_the_previous_one(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    state.write_snapshot(images_of(populated_store()), T0)
    other = MemoryStore(engine="python")
    other.announce(request(info_hash("only this"), 1), T0 + 5)
    state.write_snapshot(images_of(other), T0 + 5)
    taken_at, images = state.read_snapshot()
    assert taken_at == T0 + 5
    assert [image.info_hash for image in images] == [info_hash("only this")]


def test_interrupted_snapshot_write_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    store = populated_store()
    state = SqliteState(tmp_path)
    state.write_snapshot(images_of(store), T0 + 100)
    replacement = images_of(populated_store())

    def failing() -> Iterator[SwarmImage]:
        yield replacement[0]
        yield replacement[1]
        raise RuntimeError("export failed midway")

    with pytest.raises(RuntimeError, match="midway"):
        state.write_snapshot(failing(), T0 + 200)
    state.close()
    state = SqliteState(tmp_path)
    taken_at, images = state.read_snapshot()
    assert taken_at == T0 + 100
    assert [image.info_hash for image in images] == store.order


def test_no_snapshot_yet_reads_as_none_and_nothing(tmp_path: Path) -> None:
    taken_at, images = SqliteState(tmp_path).read_snapshot()
    assert taken_at is None
    assert list(images) == []


def test_malformed_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    state.write_snapshot(images_of(populated_store()), T0)
    db = raw(tmp_path)
    db.execute("UPDATE swarms SET v4_addrs = substr(v4_addrs, 1, 5) WHERE info_hash = ?",
               (SMALL,))
    db.execute("UPDATE swarms SET info_hash = 'not a hash' WHERE info_hash = ?", (V6_ONLY,))
    db.execute("UPDATE swarms SET v6_seeders = NULL WHERE info_hash = ?", (LARGE,))
    db.close()
    _, images = state.read_snapshot()
    assert [image.info_hash for image in images] == [NO_PEERS]
    assert state.skipped_rows == 3


# -- completed counts ------------------------------------------------------------------


def test_completed_counts_are_upserted_and_kept(tmp_path: Path) -> None:
    a, b = info_hash("a"), info_hash("b")
    state = SqliteState(tmp_path)
    state.write_completed([(a, 1), (b, 2)])
    state.write_completed([(a, 5)])
    state.close()
    assert SqliteState(tmp_path).read_completed() == {a: 5, b: 2}


def test_snapshot_supersedes_completed_counts_written_before_it(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    state.write_completed([(SMALL, 1)])
    state.write_snapshot(images_of(populated_store()), T0)
    state.write_completed([(LARGE, 9)])
    assert state.read_completed() == {LARGE: 9}


# -- the UDP secret --------------------------------------------------------------------


def test_udp_secret_is_32_random_bytes_kept_across_reopen(tmp_path: Path) -> None:
    secret = SqliteState(tmp_path / "one").udp_secret()
    assert len(secret) == 32
    assert SqliteState(tmp_path / "one").udp_secret() == secret
    assert SqliteState(tmp_path / "two").udp_secret() != secret


def test_malformed_udp_secret_is_replaced(tmp_path: Path) -> None:
    SqliteState(tmp_path).close()
    db = raw(tmp_path)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('udp_secret', x'0102')")
    db.close()
    state = SqliteState(tmp_path)
    secret = state.udp_secret()
    assert len(secret) == 32
    assert state.udp_secret() == secret


# -- the file itself -------------------------------------------------------------------


def test_missing_data_dir_is_created_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "state"
    SqliteState(data_dir).close()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert (data_dir / DB_NAME).is_file()


def test_database_uses_write_ahead_log(tmp_path: Path) -> None:
    SqliteState(tmp_path).close()
    db = raw(tmp_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    SqliteState(tmp_path).close()
    db = raw(tmp_path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(NewerSchemaError, match="newer than this Shoal"):
        SqliteState(tmp_path)


def test_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(StateError, match=DB_NAME):
        SqliteState(tmp_path)


def test_failed_write_is_a_clear_error_and_keeps_the_database_usable(tmp_path: Path) -> None:
    state = SqliteState(tmp_path, busy_timeout=0)
    holder = raw(tmp_path)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
    with pytest.raises(StateError, match="cannot write completed counts"):
        state.write_completed([(SMALL, 1)])
    holder.execute("ROLLBACK")
    state.write_completed([(SMALL, 2)])
    assert state.read_completed() == {SMALL: 2}
