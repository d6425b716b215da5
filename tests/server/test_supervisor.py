"""Supervised background components: an error restarts the component, is counted and
shows in its health; a stop ends them all."""

from __future__ import annotations

import asyncio

from shoal.server.stats import Counters
from shoal.server.supervisor import Supervisor


def test_a_failing_component_is_restarted_counted_and_reported() -> None:
    async def main() -> None:
        counters = Counters()
        supervisor = Supervisor(counters)
        runs = 0

        async def flaky() -> None:
            nonlocal runs
            runs += 1
            if runs <= 2:
                raise RuntimeError(f"failure {runs}")
            await asyncio.sleep(3600)

        supervisor.start("flaky", flaky, restart_pause=0.01)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if runs >= 3:
                break
        await asyncio.sleep(0)
        assert runs == 3
        assert counters.component_failures["flaky"] == 2
        assert supervisor.health() == [("flaky", True, "RuntimeError: failure 2")]
        await supervisor.stop()
        assert supervisor.health() == [("flaky", False, "RuntimeError: failure 2")]

    asyncio.run(main())


def test_a_component_that_returns_is_started_again() -> None:
    async def main() -> int:
        supervisor = Supervisor(Counters())
        runs = 0

        async def short() -> None:
            nonlocal runs
            runs += 1

        supervisor.start("short", short, restart_pause=0.01)
        await asyncio.sleep(0.2)
        await supervisor.stop()
        return runs

    assert asyncio.run(main()) >= 2
