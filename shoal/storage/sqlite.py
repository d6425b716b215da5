"""What the in-memory store keeps across restarts, in one embedded SQLite file.

``<data_dir>/shoal.sqlite3`` holds three tables:

- ``meta``: the schema version, the UDP connection-id secret, when the snapshot was taken;
- ``completed``: per-torrent completed counts, written a few seconds after each completed
  download, so a count survives even a ``kill -9``;
- ``swarms``: the snapshot, one row per torrent (its completed count, when it was last
  announced, and per address family the seeder count and the compact addresses, peer ids and
  per-peer words as blobs, NULL for an absent family).

A snapshot replaces the previous one in a single transaction: a crash while writing leaves
the previous snapshot whole. It also clears the ``completed`` table, since it carries every
torrent's count itself; counts written after it go back there, and a load takes, per
torrent, the larger of the two.

Everything here is synchronous and blocking: the server calls it from a worker thread. One
connection serves every call, under a lock, so calls from several threads are serialized.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shoal.storage.memory import FamilyImage, SwarmImage

SCHEMA_VERSION = 1
DB_NAME = "shoal.sqlite3"
SECRET_LENGTH = 32

_HASH = 20
_ID = 20
_META = 32  # four little-endian u64 words per peer
_V4, _V6 = 6, 18

_KEY_SCHEMA = "schema_version"
_KEY_SECRET = "udp_secret"
_KEY_TAKEN_AT = "snapshot_taken_at"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS completed ("
    " info_hash BLOB PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS swarms ("
    " info_hash BLOB NOT NULL, completed INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    " v4_seeders INTEGER, v4_addrs BLOB, v4_ids BLOB, v4_meta BLOB,"
    " v6_seeders INTEGER, v6_addrs BLOB, v6_ids BLOB, v6_meta BLOB)",
)
# OR REPLACE: a torrent dropped and added again during a snapshot walk is met twice, and
# the later image (taken later) is the one kept.
_INSERT_SWARM = "INSERT OR REPLACE INTO swarms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT_SWARMS = (
    "SELECT info_hash, completed, last_seen, v4_seeders, v4_addrs, v4_ids, v4_meta,"
    " v6_seeders, v6_addrs, v6_ids, v6_meta FROM swarms ORDER BY rowid"
)

_Row = tuple[Any, ...]


class StateError(Exception):
    """The state database cannot be opened, read or written (the message says which file
    and why)."""


class NewerSchemaError(StateError):
    """The database was written by a newer Shoal, with a schema this one does not know."""


def _family_row(fam: FamilyImage | None) -> tuple[int | None, bytes | None, bytes | None,
                                                  bytes | None]:
    if fam is None:
        return None, None, None, None
    return fam.seeders, fam.addrs, fam.ids, fam.meta


def _swarm_row(image: SwarmImage) -> _Row:
    return (image.info_hash, image.completed, image.last_seen,
            *_family_row(image.v4), *_family_row(image.v6))


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _family_from_row(values: _Row, width: int) -> FamilyImage | None:
    """The family in four columns, None when absent; raises ValueError when malformed."""
    seeders, addrs, ids, meta = values
    if seeders is None and addrs is None and ids is None and meta is None:
        return None
    if not (_is_count(seeders) and isinstance(addrs, bytes) and isinstance(ids, bytes)
            and isinstance(meta, bytes)):
        raise ValueError("family columns of the wrong type")
    n = len(ids) // _ID
    if len(ids) % _ID or len(addrs) != n * width or len(meta) != n * _META or seeders > n:
        raise ValueError("family blobs of inconsistent lengths")
    return FamilyImage(seeders, addrs, ids, meta)


def swarm_from_row(row: _Row) -> SwarmImage:
    """The image a ``swarms`` row stores; raises ValueError for a malformed row."""
    info_hash, completed, last_seen = row[0], row[1], row[2]
    if not (isinstance(info_hash, bytes) and len(info_hash) == _HASH
            and _is_count(completed) and _is_count(last_seen)):
        raise ValueError("torrent columns of the wrong type")
    return SwarmImage(info_hash, completed, last_seen,
                      _family_from_row(row[3:7], _V4), _family_from_row(row[7:11], _V6))


class SqliteState:
    """The state database in ``data_dir`` (created, mode 0700, when missing).
    ``busy_timeout``: seconds a call waits for another process holding the database before
    it fails."""

    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = data_dir / DB_NAME
        self._busy_ms = int(busy_timeout * 1000)
        self.skipped_rows = 0
        """Rows the last :meth:`read_snapshot` skipped as malformed (so far)."""
        self._lock = threading.Lock()
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state database {self.path}: {exc}") from exc
        self._db = db
        try:
            self._setup()
        except sqlite3.Error as exc:
            db.close()
            raise StateError(f"cannot open the state database {self.path}: {exc}") from exc
        except BaseException:
            db.close()
            raise

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        with self._transaction():
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)")
            found = self._meta(_KEY_SCHEMA)
            if found is not None and type(found) is not int:
                raise StateError(f"{self.path} has an unreadable schema version {found!r}")
            if found is not None and found > SCHEMA_VERSION:
                raise NewerSchemaError(
                    f"{self.path} has schema version {found!r}, newer than this Shoal's "
                    f"({SCHEMA_VERSION}): upgrade Shoal, or move the file aside to start "
                    "afresh"
                )
            for statement in _TABLES:
                db.execute(statement)
            if found is None:
                self._set_meta(_KEY_SCHEMA, SCHEMA_VERSION)

    # -- helpers ----------------------------------------------------------------------

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: object) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _failed(self, what: str, exc: sqlite3.Error) -> StateError:
        return StateError(f"cannot {what} in {self.path}: {exc}")

    # -- the calls --------------------------------------------------------------------

    def udp_secret(self) -> bytes:
        """The UDP connection-id secret, made (random) on first use and kept from then on.
        A stored value that is not 32 bytes is replaced."""
        with self._lock:
            try:
                with self._transaction():
                    secret = self._meta(_KEY_SECRET)
                    if not isinstance(secret, bytes) or len(secret) != SECRET_LENGTH:
                        secret = os.urandom(SECRET_LENGTH)
                        self._set_meta(_KEY_SECRET, secret)
            except sqlite3.Error as exc:
                raise self._failed("keep the UDP secret", exc) from exc
        return secret

    def write_completed(self, counts: Iterable[tuple[bytes, int]]) -> None:
        """Record these torrents' completed counts (replacing what was recorded)."""
        with self._lock:
            try:
                with self._transaction():
                    self._db.executemany(
                        "INSERT OR REPLACE INTO completed (info_hash, count) VALUES (?, ?)",
                        counts,
                    )
            except sqlite3.Error as exc:
                raise self._failed("write completed counts", exc) from exc

    def read_completed(self) -> dict[bytes, int]:
        """The completed counts recorded since the last snapshot (malformed rows left out)."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT info_hash, count FROM completed").fetchall()
            except sqlite3.Error as exc:
                raise self._failed("read completed counts", exc) from exc
        return {
            info_hash: count
            for info_hash, count in rows
            if isinstance(info_hash, bytes) and len(info_hash) == _HASH and _is_count(count)
        }

    def write_snapshot(self, images: Iterable[SwarmImage], taken_at: int) -> int:
        """Replace the snapshot with ``images`` (consumed as they come, so they may be
        produced while this writes) and clear the completed counts the snapshot supersedes;
        all in one transaction, which an exception from ``images`` rolls back, leaving the
        previous snapshot. Returns the rows written."""
        written = 0

        def rows() -> Iterator[_Row]:
            nonlocal written
            for image in images:
                yield _swarm_row(image)
                written += 1

        with self._lock:
            db = self._db
            try:
                with self._transaction():
                    db.execute("DELETE FROM swarms")
                    db.execute("DELETE FROM completed")
                    db.executemany(_INSERT_SWARM, rows())
                    self._set_meta(_KEY_TAKEN_AT, taken_at)
            except sqlite3.Error as exc:
                raise self._failed("write the snapshot", exc) from exc
            try:
                # Fold the log back into the database and truncate it, so the directory
                # holds about one snapshot's worth rather than two.
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # pragma: no cover - the snapshot is committed
                raise self._failed("checkpoint the snapshot", exc) from exc
        return written

    def read_snapshot(self) -> tuple[int | None, Iterator[SwarmImage]]:
        """When the snapshot was taken (None: never) and its torrents, in the order they
        were written, read as the iterator is consumed. A malformed row is skipped and
        counted in :attr:`skipped_rows`. Consume the iterator before other calls."""
        with self._lock:
            try:
                taken_at = self._meta(_KEY_TAKEN_AT)
                cursor = self._db.execute(_SELECT_SWARMS)
            except sqlite3.Error as exc:
                raise self._failed("read the snapshot", exc) from exc
        self.skipped_rows = 0
        if type(taken_at) is not int:
            taken_at = None

        def images() -> Iterator[SwarmImage]:
            try:
                for row in cursor:
                    try:
                        image = swarm_from_row(row)
                    except ValueError:
                        self.skipped_rows += 1
                        continue
                    yield image
            except sqlite3.Error as exc:
                raise self._failed("read the snapshot", exc) from exc
            finally:
                cursor.close()

        return taken_at, images()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        db = self._db
        if exc_type is None:
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may leave the transaction open
                    db.execute("ROLLBACK")
                raise
        elif db.in_transaction:  # some errors (disk full) roll back by themselves
            db.execute("ROLLBACK")
