"""The accounts database: the same behaviour on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from shoal.engine.accounting import Flag, Tally, Torrent, User
from shoal.storage.accounts import SCHEMA_VERSION, AccountsDb, AccountsError, Conflict

T0 = 1_700_000_000
H1, H2, H3 = bytes([1]) * 20, bytes([2]) * 20, bytes([3]) * 20
PK = "P" * 32


@pytest.fixture
def db(database_url: str) -> Iterator[AccountsDb]:
    found = AccountsDb(database_url)
    found.migrate()
    yield found
    found.close()


def test_a_new_database_is_migrated_to_the_current_schema(database_url: str) -> None:
    db = AccountsDb(database_url)
    try:
        assert db.migrate() == 0
        assert db.version() == SCHEMA_VERSION
        assert db.migrate() == SCHEMA_VERSION  # a second start changes nothing
    finally:
        db.close()


def test_a_database_from_a_newer_shoal_is_refused(database_url: str) -> None:
    db = AccountsDb(database_url)
    try:
        db.migrate()
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE shoal_schema SET version = 999"))
        with pytest.raises(AccountsError, match="newer than this Shoal"):
            db.migrate()
    finally:
        db.close()


def test_users_and_torrents_are_read_back_as_written(db: AccountsDb) -> None:
    user = User(7, PK, True, False, 2.0, 0.5, 5)
    torrent = Torrent(H1, H2, 2.0, 0.0)
    db.add_user(user, T0)
    db.add_torrent(torrent, T0)
    assert db.load() == ([user], [torrent])
    assert db.get_user(7) == user
    assert db.get_torrent(H1) == torrent


def test_a_taken_user_id_or_passkey_is_a_conflict(db: AccountsDb) -> None:
    db.add_user(User(1, PK), T0)
    with pytest.raises(Conflict):
        db.add_user(User(1, "Q" * 32), T0)
    with pytest.raises(Conflict):
        db.add_user(User(2, PK), T0)


def test_a_hash_registered_either_way_is_a_conflict(db: AccountsDb) -> None:
    db.add_torrent(Torrent(H1, H2), T0)
    with pytest.raises(Conflict):
        db.add_torrent(Torrent(H2), T0)
    with pytest.raises(Conflict):
        db.add_torrent(Torrent(H3, H1), T0)


def test_update_changes_only_the_fields_given(db: AccountsDb) -> None:
    db.add_user(User(1, PK), T0)
    assert db.update_user(1, {"enabled": False}) == User(1, PK, enabled=False)
    assert db.get_user(1) == User(1, PK, enabled=False)
    assert db.update_user(2, {"enabled": False}) is None
    db.add_torrent(Torrent(H1), T0)
    assert db.update_torrent(H1, {"download_factor": 0.0}) == Torrent(H1, download_factor=0.0)


def test_delete_removes_and_says_whether_there_was_one(db: AccountsDb) -> None:
    db.add_user(User(1, PK), T0)
    db.add_torrent(Torrent(H1), T0)
    assert db.delete_user(1) and not db.delete_user(1)
    assert db.delete_torrent(H1) and not db.delete_torrent(H1)
    assert db.load() == ([], [])


def test_accounting_flushes_add_up(db: AccountsDb) -> None:
    db.write_accounting({(1, H1): Tally(10, 20, 10, 40, 5, 1, 2, T0, T0 + 5)}, [])
    db.write_accounting({(1, H1): Tally(1, 2, 1, 2, 3, 0, 1, T0 + 60, T0 + 60),
                         (1, H2): Tally(100, 0, 100, 0, 0, 0, 1, T0, T0)}, [])
    total, per, flagged = db.user_stats(1)
    assert per[H1].as_dict() == {
        "uploaded": 11, "downloaded": 22, "raw_uploaded": 11, "raw_downloaded": 42,
        "seeding_seconds": 8, "snatches": 1, "announces": 3, "last_seen": T0 + 60}
    assert (total.uploaded, total.announces, total.last_seen, flagged) == (111, 4, T0 + 60, 0)


def test_flags_are_kept_apart_from_the_credited_amounts(db: AccountsDb) -> None:
    db.write_accounting({}, [Flag(1, H1, T0, 10**12, 0, 10)])
    total, _, flagged = db.user_stats(1)
    assert (total.uploaded, flagged) == (0, 1)


def test_bulk_import_inserts_and_replaces_in_one_go(db: AccountsDb) -> None:
    db.add_user(User(1, PK), T0)
    counts = db.import_records([User(1, PK, can_leech=False), User(2, "Q" * 32)],
                               [Torrent(H1), Torrent(H2, H3)], T0)
    assert counts == (2, 2)
    users, torrents = db.load()
    assert sorted(users, key=lambda u: u.id) == [User(1, PK, can_leech=False),
                                                 User(2, "Q" * 32)]
    assert {t.info_hash for t in torrents} == {H1, H2}


def test_a_large_account_survives_64_bit_totals(db: AccountsDb) -> None:
    big = 2**62
    db.write_accounting({(1, H1): Tally(big, 0, big, 0, 0, 0, 1, T0, T0)}, [])
    assert db.user_stats(1)[0].uploaded == big


def test_a_bad_url_is_a_clear_error() -> None:
    with pytest.raises(AccountsError, match="bad URL"):
        AccountsDb("nosuchdb://x")
