"""Private mode in a running tracker: the accounts database opened and loaded at start,
the accounting written every ``accounting.flush_interval`` seconds off the event loop (a
supervised component), and written once more at shutdown.

The announce path only adds to tallies in memory (:class:`PrivateTracker`); a flush takes
them and writes them in one transaction in a worker thread. If the write fails they are
put back, merged with what came since, for the next flush: a ``kill -9`` loses at most one
interval, a clean stop nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from shoal.config import Settings
from shoal.engine.accounting import AccountingRules, PrivateTracker
from shoal.storage.accounts import AccountsDb, sqlite_url

log = logging.getLogger("shoal.accounts")


def accounting_rules(settings: Settings, peer_timeout: int) -> AccountingRules:
    a = settings.accounting
    return AccountingRules(peer_limit=a.peer_limit, max_rate=a.max_rate,
                           freeleech=a.freeleech, peer_timeout=peer_timeout)


def database_url(settings: Settings) -> str:
    """``database.url``, or the SQLite file in the data directory (in memory when the
    tracker keeps nothing on disk)."""
    if settings.database.url:
        return settings.database.url
    if not settings.storage.persist:
        return "sqlite://"
    data_dir = Path(settings.storage.data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the state database's
    return sqlite_url(data_dir.resolve())


class PrivateMode:
    """The accounts database and the in-memory registry and tallies of one tracker."""

    def __init__(self, settings: Settings, peer_timeout: int, now: Callable[[], int]) -> None:
        self.db = AccountsDb(database_url(settings))
        self.tracker = PrivateTracker(accounting_rules(settings, peer_timeout))
        self.flush_interval = settings.accounting.flush_interval
        self.now = now
        self.flushes = 0
        self.flush_failures = 0

    def open(self) -> str:
        """Migrate the schema and load users and torrents (blocking, once, at start);
        returns a line for the log."""
        before = self.db.migrate()
        users, torrents = self.db.load()
        self.tracker.load(users, torrents)
        migrated = "" if before else ", new schema created"
        return (f"{len(users):,} users, {len(torrents):,} torrents from {self.db.describe}"
                f"{migrated}")

    def configure(self, settings: Settings, peer_timeout: int) -> None:
        self.tracker.configure(accounting_rules(settings, peer_timeout))

    async def flush(self) -> int:
        """Write the accounting gathered since the last flush; returns the rows written."""
        pending, flags = self.tracker.take()
        if not pending and not flags:
            self.tracker.prune(self.now())
            return 0
        try:
            rows = await asyncio.to_thread(self.db.write_accounting, pending, flags)
        except BaseException:
            self.flush_failures += 1
            self.tracker.give_back(pending, flags)
            raise
        self.flushes += 1
        self.tracker.prune(self.now())
        return rows

    async def run_flusher(self) -> None:
        """Flush every ``flush_interval`` seconds, forever."""
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def close(self) -> None:
        """The last flush, then close the database."""
        try:
            await self.flush()
        finally:
            await asyncio.to_thread(self.db.close)
