"""Private mode's database: users, torrents, accounting and flags, in SQLite (the default,
a file in the data directory) or PostgreSQL (a DSN), through SQLAlchemy Core.

One schema, created and upgraded by numbered migrations (:data:`MIGRATIONS`); the
``shoal_schema`` table records the version reached, and a database from a newer Shoal is
refused rather than misread. Info hashes are stored as 40 lowercase hex characters so a
site can read and join the tables with plain SQL:

- ``users``: ``id`` (the site's own), ``passkey``, ``enabled``, ``can_leech``, the two
  factors, ``peer_limit`` (NULL: the tracker's default), ``created_at``;
- ``torrents``: ``info_hash``, ``info_hash2`` (a hybrid torrent's second hash), factors,
  ``created_at``;
- ``accounting``: per (``user_id``, ``info_hash``): credited ``uploaded``/``downloaded``,
  the ``raw_`` amounts the client reported, ``seeding_seconds``, ``snatches``,
  ``announces``, ``first_seen``, ``last_seen`` (seconds since the epoch);
- ``flags``: deltas not credited because their rate exceeded ``accounting.max_rate``.

Everything here blocks; the server runs it in worker threads, one call at a time (a lock),
and the accounting of a flush is written in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from shoal.engine.accounting import Flag, Key, Tally, Torrent, User

DB_NAME = "accounts.sqlite3"

metadata = sa.MetaData()

schema = sa.Table(
    "shoal_schema", metadata,
    sa.Column("version", sa.Integer, nullable=False),
)
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("passkey", sa.String(64), nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("can_leech", sa.Boolean, nullable=False),
    sa.Column("upload_factor", sa.Float, nullable=False),
    sa.Column("download_factor", sa.Float, nullable=False),
    sa.Column("peer_limit", sa.Integer, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
torrents = sa.Table(
    "torrents", metadata,
    sa.Column("info_hash", sa.String(40), primary_key=True),
    sa.Column("info_hash2", sa.String(40), nullable=True, unique=True),
    sa.Column("upload_factor", sa.Float, nullable=False),
    sa.Column("download_factor", sa.Float, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
accounting = sa.Table(
    "accounting", metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("info_hash", sa.String(40), primary_key=True),
    sa.Column("uploaded", sa.BigInteger, nullable=False),
    sa.Column("downloaded", sa.BigInteger, nullable=False),
    sa.Column("raw_uploaded", sa.BigInteger, nullable=False),
    sa.Column("raw_downloaded", sa.BigInteger, nullable=False),
    sa.Column("seeding_seconds", sa.BigInteger, nullable=False),
    sa.Column("snatches", sa.BigInteger, nullable=False),
    sa.Column("announces", sa.BigInteger, nullable=False),
    sa.Column("first_seen", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=False),
)
flags = sa.Table(
    "flags", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("info_hash", sa.String(40), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("uploaded", sa.BigInteger, nullable=False),
    sa.Column("downloaded", sa.BigInteger, nullable=False),
    sa.Column("seconds", sa.BigInteger, nullable=False),
)

_COUNTS = ("uploaded", "downloaded", "raw_uploaded", "raw_downloaded", "seeding_seconds",
           "snatches", "announces")


def _v1(conn: Connection) -> None:
    """The first schema: the four tables as defined above."""
    for table in (users, torrents, accounting, flags):
        table.create(conn)


MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _v1),)
"""(version, step): each step moves the schema from the version before it to its own, in
one transaction. A later step alters tables with explicit DDL (the table definitions above
are the newest schema, for queries)."""
SCHEMA_VERSION = MIGRATIONS[-1][0]


class AccountsError(Exception):
    """The accounts database cannot be opened or used (the message says why)."""


class Conflict(AccountsError):
    """A user id, passkey or info hash already taken."""


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_NAME}"


def _hex(info_hash: bytes | None) -> str | None:
    return None if info_hash is None else info_hash.hex()


def _user(row: Any) -> User:
    return User(row.id, row.passkey, bool(row.enabled), bool(row.can_leech),
                float(row.upload_factor), float(row.download_factor), row.peer_limit)


def _torrent(row: Any) -> Torrent:
    return Torrent(bytes.fromhex(row.info_hash),
                   None if row.info_hash2 is None else bytes.fromhex(row.info_hash2),
                   float(row.upload_factor), float(row.download_factor))


@dataclass(frozen=True, slots=True)
class Totals:
    """A user's accounting summed over torrents, or one torrent's row."""

    uploaded: int = 0
    downloaded: int = 0
    raw_uploaded: int = 0
    raw_downloaded: int = 0
    seeding_seconds: int = 0
    snatches: int = 0
    announces: int = 0
    last_seen: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class AccountsDb:
    """One database of users, torrents and accounting; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url in ("sqlite://", "sqlite:///:memory:"):
                engine = sa.create_engine(url, poolclass=StaticPool,
                                          connect_args={"check_same_thread": False})
            elif url.startswith("sqlite"):
                engine = sa.create_engine(url, connect_args={"timeout": 30})
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise AccountsError(f"database: bad URL {_safe(url)}: {exc}") from exc
        self.engine: Engine = engine
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        self.dialect = engine.dialect.name
        self._lock = threading.Lock()

    @property
    def describe(self) -> str:
        return _safe(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------

    def migrate(self) -> int:
        """Bring the schema up to :data:`SCHEMA_VERSION`; returns the version found before
        (0 for a new database). Refuses a database from a newer Shoal."""
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    if not sa.inspect(conn).has_table("shoal_schema"):
                        schema.create(conn)
                        conn.execute(schema.insert().values(version=0))
                    found = conn.execute(sa.select(schema.c.version)).scalar_one()
            except sa.exc.SQLAlchemyError as exc:
                raise AccountsError(f"database {self.describe}: {_first_line(exc)}") from exc
            if found > SCHEMA_VERSION:
                raise AccountsError(
                    f"database {self.describe} has schema {found}, newer than this Shoal's "
                    f"({SCHEMA_VERSION}); upgrade Shoal")
            for version, step in MIGRATIONS:
                if version > found:
                    with self.engine.begin() as conn:
                        step(conn)
                        conn.execute(schema.update().values(version=version))
            return int(found)

    def version(self) -> int:
        with self._lock, self.engine.connect() as conn:
            return int(conn.execute(sa.select(schema.c.version)).scalar_one())

    # -- reading everything at start ----------------------------------------------

    def load(self) -> tuple[list[User], list[Torrent]]:
        with self._lock, self.engine.connect() as conn:
            found_users = [_user(r) for r in conn.execute(sa.select(users))]
            found_torrents = [_torrent(r) for r in conn.execute(sa.select(torrents))]
        return found_users, found_torrents

    # -- users --------------------------------------------------------------------

    def _call(self, work: Callable[[Connection], Any]) -> Any:
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except sa.exc.IntegrityError as exc:
                raise Conflict(_first_line(exc)) from exc

    def add_user(self, user: User, now: int) -> User:
        """Insert ``user``; raises :class:`Conflict` for a taken id or passkey."""
        self._call(lambda conn: conn.execute(users.insert().values(
            **_user_values(user), created_at=now)))
        return user

    def get_user(self, user_id: int) -> User | None:
        with self._lock, self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
        return None if row is None else _user(row)

    def update_user(self, user_id: int, changes: Mapping[str, Any]) -> User | None:
        """Apply ``changes`` (field -> value) to a user; None when there is no such user."""
        def work(conn: Connection) -> User | None:
            row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
            if row is None:
                return None
            user = replace(_user(row), **changes)
            conn.execute(users.update().where(users.c.id == user_id)
                         .values(**_user_values(user)))
            return user
        result: User | None = self._call(work)
        return result

    def delete_user(self, user_id: int) -> bool:
        """Remove a user (its accounting rows stay, for the site's history)."""
        count = self._call(lambda conn: conn.execute(
            users.delete().where(users.c.id == user_id)).rowcount)
        return bool(count)

    # -- torrents -----------------------------------------------------------------

    def add_torrent(self, torrent: Torrent, now: int) -> Torrent:
        def work(conn: Connection) -> None:
            if torrent.info_hash2 is not None:
                both = [torrent.info_hash.hex(), torrent.info_hash2.hex()]
                clash = conn.execute(sa.select(torrents.c.info_hash).where(
                    sa.or_(torrents.c.info_hash.in_(both),
                           torrents.c.info_hash2.in_(both)))).first()
            else:
                clash = conn.execute(sa.select(torrents.c.info_hash).where(
                    torrents.c.info_hash2 == torrent.info_hash.hex())).first()
            if clash is not None:
                raise Conflict(f"info hash already registered (torrent {clash.info_hash})")
            conn.execute(torrents.insert().values(**_torrent_values(torrent), created_at=now))
        self._call(work)
        return torrent

    def get_torrent(self, info_hash: bytes) -> Torrent | None:
        with self._lock, self.engine.connect() as conn:
            row = conn.execute(sa.select(torrents).where(
                torrents.c.info_hash == info_hash.hex())).first()
        return None if row is None else _torrent(row)

    def update_torrent(self, info_hash: bytes, changes: Mapping[str, Any]) -> Torrent | None:
        def work(conn: Connection) -> Torrent | None:
            row = conn.execute(sa.select(torrents).where(
                torrents.c.info_hash == info_hash.hex())).first()
            if row is None:
                return None
            torrent = replace(_torrent(row), **changes)
            conn.execute(torrents.update().where(torrents.c.info_hash == info_hash.hex())
                         .values(**_torrent_values(torrent)))
            return torrent
        result: Torrent | None = self._call(work)
        return result

    def delete_torrent(self, info_hash: bytes) -> bool:
        count = self._call(lambda conn: conn.execute(
            torrents.delete().where(torrents.c.info_hash == info_hash.hex())).rowcount)
        return bool(count)

    # -- bulk import --------------------------------------------------------------

    def import_records(self, new_users: Iterable[User], new_torrents: Iterable[Torrent],
                       now: int) -> tuple[int, int]:
        """Insert or replace users and torrents in one transaction; returns the counts."""
        user_rows = [{**_user_values(u), "created_at": now} for u in new_users]
        torrent_rows = [{**_torrent_values(t), "created_at": now} for t in new_torrents]

        def work(conn: Connection) -> None:
            insert = self._insert(users)
            if user_rows:
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["id"],
                    set_={c: insert.excluded[c] for c in _user_values_keys()}), user_rows)
            insert = self._insert(torrents)
            if torrent_rows:
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["info_hash"],
                    set_={c: insert.excluded[c] for c in _torrent_values_keys()}),
                    torrent_rows)
        self._call(work)
        return len(user_rows), len(torrent_rows)

    # -- accounting ---------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert(table) if self.dialect == "postgresql"
                else sqlite.insert(table))

    def write_accounting(self, pending: Mapping[Key, Tally], new_flags: Iterable[Flag]) -> int:
        """Add ``pending`` to the accounting rows and append ``new_flags``, in one
        transaction; returns the rows written."""
        rows = [
            {"user_id": uid, "info_hash": info_hash.hex(),
             **{name: getattr(t, name) for name in _COUNTS},
             "first_seen": t.first_seen, "last_seen": t.last_seen}
            for (uid, info_hash), t in pending.items()
        ]
        flag_rows = [
            {"user_id": f.user_id, "info_hash": f.info_hash.hex(), "at": f.at,
             "uploaded": f.uploaded, "downloaded": f.downloaded, "seconds": f.seconds}
            for f in new_flags
        ]
        if not rows and not flag_rows:
            return 0
        insert = self._insert(accounting)
        upsert = insert.on_conflict_do_update(
            index_elements=["user_id", "info_hash"],
            set_={**{name: accounting.c[name] + insert.excluded[name] for name in _COUNTS},
                  "last_seen": insert.excluded.last_seen},
        )
        with self._lock, self.engine.begin() as conn:
            if rows:
                conn.execute(upsert, rows)
            if flag_rows:
                conn.execute(flags.insert(), flag_rows)
        return len(rows)

    def user_stats(self, user_id: int) -> tuple[Totals, dict[bytes, Totals], int]:
        """A user's totals, per torrent, and the number of flags."""
        with self._lock, self.engine.connect() as conn:
            per = {
                bytes.fromhex(r.info_hash): Totals(**{n: int(getattr(r, n)) for n in
                                                      (*_COUNTS, "last_seen")})
                for r in conn.execute(sa.select(accounting).where(
                    accounting.c.user_id == user_id))
            }
            flagged = conn.execute(sa.select(sa.func.count()).select_from(flags).where(
                flags.c.user_id == user_id)).scalar_one()
        total = Totals(**{n: sum(getattr(t, n) for t in per.values()) for n in _COUNTS},
                       last_seen=max((t.last_seen for t in per.values()), default=0))
        return total, per, int(flagged)


def _user_values(user: User) -> dict[str, Any]:
    return {"id": user.id, "passkey": user.passkey, "enabled": user.enabled,
            "can_leech": user.can_leech, "upload_factor": user.upload_factor,
            "download_factor": user.download_factor, "peer_limit": user.peer_limit}


def _user_values_keys() -> tuple[str, ...]:
    return ("passkey", "enabled", "can_leech", "upload_factor", "download_factor",
            "peer_limit")


def _torrent_values(torrent: Torrent) -> dict[str, Any]:
    return {"info_hash": torrent.info_hash.hex(), "info_hash2": _hex(torrent.info_hash2),
            "upload_factor": torrent.upload_factor, "download_factor": torrent.download_factor}


def _torrent_values_keys() -> tuple[str, ...]:
    return ("info_hash2", "upload_factor", "download_factor")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _safe(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
