"""The part of a load generator that does not depend on the protocol: which request goes
out next, and the run loop. ``HttpLoad`` and ``UdpLoad`` fill in how requests are sent,
expired and abandoned.

A run is either closed-loop (keep as many requests in flight as the generator allows) or
paced at ``rate`` requests a second (open loop: what cannot be sent on time is counted as
skipped). A tick every ``_TICK_S`` ends the issuing phase at the deadline or after ``count``
requests, expires late requests and, once nothing is left in flight, ends the run.

Before a run every object alive (the workload's encoded requests above all) is moved out
of the garbage collector's reach (``gc.freeze``), so a collection during the run scans only
what the run itself allocated: a full collection over a few hundred thousand requests
would otherwise hold the generator's loop for tens of milliseconds and show up in the
tracker's latency.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sized
from typing import Generic, TypeVar

from bench.spin import Spinner
from bench.stats import LoadStats

_TICK_S = 0.02
_PACE_TICK_S = 0.001

OpsT = TypeVar("OpsT", bound=Sized)


class LoadDriver(Generic[OpsT]):
    """Request supply and run loop shared by the HTTP and UDP load generators."""

    def __init__(self, ops: OpsT, timeout: float) -> None:
        self.ops = ops
        self.timeout = timeout
        self.stats = LoadStats()
        self.record = False
        self.closed_loop = True
        self._issuing = False
        self._expired = False
        self._cursor = 0
        self._end: int | None = None
        self._retry: list[int] = []

    # -- request supply -------------------------------------------------------------------

    def next_op(self) -> int:
        """The index of the next request to send, or -1 when none should go out now."""
        if self._retry:
            return self._retry.pop()
        if not self._issuing:
            return -1
        i = self._cursor
        if self._end is not None and i >= self._end:
            return -1
        self._cursor = i + 1
        return i % len(self.ops)

    def requeue(self, index: int) -> None:
        """Send a lost request again (only while filling: a measured mix just moves on)."""
        if self._end is not None and not self._expired:
            self._retry.append(index)

    # -- what the protocol fills in -------------------------------------------------------

    def in_flight(self) -> int:
        """Requests waiting for a reply."""
        raise NotImplementedError

    async def _prepare(self) -> None:
        """Before a run, even one with no requests."""

    def _start(self) -> None:
        """The run begins: in a closed loop, fill it (pacing starts after this)."""
        raise NotImplementedError

    def _expire(self, now_ns: int, timeout_ns: int) -> None:
        """On each tick: give up on requests older than the timeout."""
        raise NotImplementedError

    def _send_due(self, due: int) -> int:
        """Open loop: send up to ``due`` requests now; how many went out."""
        raise NotImplementedError

    def _abandon(self) -> None:
        """After the drain: drop what is still in flight, uncounted."""
        raise NotImplementedError

    # -- driving --------------------------------------------------------------------------

    async def run(
        self,
        ops: OpsT,
        *,
        duration: float | None = None,
        count: int | None = None,
        record: bool = False,
        rate: float | None = None,
        limit: float = 600.0,
        spin: bool = True,
    ) -> LoadStats:
        """Send ``ops`` (cycling) for ``duration`` seconds, or the first ``count`` of them
        once; at most ``limit`` seconds in any case. With ``spin`` the loop busy-polls (see
        :mod:`bench.spin`). Returns what was seen."""
        await self._prepare()
        if not len(ops):
            return LoadStats()
        loop = asyncio.get_running_loop()
        self.ops = ops
        self.stats = stats = LoadStats()
        self.record = record
        self.closed_loop = rate is None
        self._cursor = 0
        self._end = count
        self._retry = []
        self._issuing = True
        self._expired = False
        gc.collect()
        gc.freeze()
        spinner = Spinner(loop) if spin else None
        if spinner is not None:
            await spinner.calibrate()
            spinner.start()
        start = time.monotonic()
        stop_at = start + min(duration if duration is not None else limit, limit)
        timeout_ns = int(self.timeout * 1e9)
        done: asyncio.Future[None] = loop.create_future()

        def tick() -> None:
            now = time.monotonic()
            if now >= stop_at:
                self._expired = True
                self._retry.clear()
            if self._issuing and (
                self._expired or (self._end is not None and self._cursor >= self._end)
            ):
                self._issuing = False
            self._expire(time.perf_counter_ns(), timeout_ns)
            drained = self.in_flight() == 0 and not self._retry
            if not self._issuing and (drained or now >= stop_at + self.timeout):
                if not done.done():
                    done.set_result(None)
                return
            loop.call_later(_TICK_S, tick)

        sent = 0

        def pace() -> None:
            nonlocal sent
            if not self._issuing or done.done():
                return
            due = int((time.monotonic() - start) * (rate or 0.0)) - sent
            n = self._send_due(due)
            sent += n
            due -= n
            if due > 0:
                stats.skipped += due
                sent += due
            loop.call_later(_PACE_TICK_S, pace)

        loop.call_later(_TICK_S, tick)
        self._start()
        if not self.closed_loop:
            loop.call_soon(pace)
        await done
        self._issuing = False
        now = time.monotonic()
        stats.elapsed = min(now, stop_at) - start
        if spinner is not None:
            spinner.stop()
            stats.busy_share = spinner.busy_share(now - start)
        self._abandon()
        return stats
