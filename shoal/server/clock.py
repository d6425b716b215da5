"""A cached integer clock: the loop updates it once a second, requests read an attribute."""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Whole seconds since the epoch, refreshed by :meth:`run` while the server runs."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = int(time.time())

    def tick(self) -> None:
        self.now = int(time.time())

    async def run(self, period: float = 1.0) -> None:
        while True:
            self.tick()
            await asyncio.sleep(period)
