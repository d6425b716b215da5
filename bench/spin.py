"""Busy-polling for the load generator's event loop.

On loopback, the process that sends a packet also pays for waking the process that
receives it. A generator that sleeps in ``epoll_wait`` between replies therefore makes
the tracker pay a cross-CPU wake-up (expensive in a virtual machine) for every reply, and
a slow tracker, whose generator sleeps most, pays most: that is a cost of the test rig,
not of the tracker (a real tracker's replies go to a network card). So while it loads a
tracker the generator keeps its loop spinning (a callback that re-schedules itself, so
the loop polls without sleeping), and its CPU share is always about 100%.

How busy the generator really was is estimated from the spin count: every loop
iteration runs the spin callback once and costs at least what an empty iteration costs
(calibrated once per process), so ``1 - spins * empty_cost / wall`` is the share of time
spent on real work.
"""

from __future__ import annotations

import asyncio
import time

_empty_iteration_s: float | None = None


class Spinner:
    """Keeps ``loop`` polling instead of sleeping, and counts its iterations."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.spins = 0
        self._on = False

    def _spin(self) -> None:
        if self._on:
            self.spins += 1
            self.loop.call_soon(self._spin)

    def start(self) -> None:
        if not self._on:
            self._on = True
            self.spins = 0
            self.loop.call_soon(self._spin)

    def stop(self) -> None:
        self._on = False

    async def calibrate(self, seconds: float = 0.2) -> float:
        """Seconds one otherwise empty loop iteration takes (measured once per process)."""
        global _empty_iteration_s
        if _empty_iteration_s is None:
            self.start()
            t0 = time.perf_counter()
            await asyncio.sleep(seconds)
            elapsed = time.perf_counter() - t0
            self.stop()
            _empty_iteration_s = elapsed / max(self.spins, 1)
        return _empty_iteration_s

    def busy_share(self, wall: float) -> float | None:
        """Estimated share of ``wall`` seconds spent on work rather than empty polling."""
        if _empty_iteration_s is None or wall <= 0:
            return None
        return max(0.0, min(1.0, 1.0 - self.spins * _empty_iteration_s / wall))
