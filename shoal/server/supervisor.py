"""Supervised background components: the sweeper, the HTTP reaper, the snapshot and
completed-count writers. Each runs in a task that is restarted after an error (with a
growing pause, up to a minute), so one exception never silently stops expiry, timeouts or
persistence; every failure is logged and counted, and ``/health`` shows each component."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shoal.server.stats import Counters

log = logging.getLogger("shoal.supervisor")

MAX_PAUSE = 60.0


@dataclass(slots=True)
class Component:
    """One background component and what is known of its health."""

    name: str
    run: Callable[[], Awaitable[None]]
    restart_pause: float = 1.0
    running: bool = False
    failures: int = 0
    last_error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """Starts components, restarts them when they fail, stops them all at shutdown."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.components: dict[str, Component] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]],
              restart_pause: float = 1.0) -> Component:
        """Run ``run()`` as component ``name``; it is meant to run until cancelled."""
        component = Component(name, run, restart_pause)
        self.components[name] = component
        component.task = asyncio.ensure_future(self._keep(component))
        return component

    async def _keep(self, component: Component) -> None:
        pause = component.restart_pause
        while True:
            component.running = True
            try:
                await component.run()
            except asyncio.CancelledError:
                component.running = False
                raise
            except Exception as exc:
                component.running = False
                component.failures += 1
                component.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self.counters.component_failures[component.name] += 1
                log.exception("%s failed; restarting in %.0f s", component.name, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
                continue
            component.running = False
            log.warning("%s ended by itself; restarting", component.name)
            await asyncio.sleep(component.restart_pause)

    def health(self) -> list[tuple[str, bool, str]]:
        return [(c.name, c.running, c.last_error) for c in self.components.values()]

    async def stop(self) -> None:
        tasks = [c.task for c in self.components.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for component in self.components.values():
            component.running = False
