"""Fixtures shared by every test directory.

This conftest lives in tests/ (no ``__init__.py``), so pytest puts tests/ on ``sys.path``
before collecting anything; the helper package tests/support/ is then importable as
``support`` from any test module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from support.engines import ENGINES, require_engine
from support.native import native_udp
from support.redis_server import RedisServer
from support.running import RunningTracker, loop_factories

from shoal.config import Settings
from shoal.storage.memory import MemoryStore


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each in-memory engine in turn: ``python`` and ``native`` (the compiled one)."""
    name: str = request.param
    require_engine(name)
    return name


@pytest.fixture(scope="module", params=loop_factories())
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    """The server runs on asyncio's loop and, when installed, on uvloop (as ``shoal`` does)."""
    factory: Callable[[], asyncio.AbstractEventLoop] = request.param
    return factory


@pytest.fixture
def launch_tracker(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> Iterator[Callable[..., RunningTracker]]:
    """Start trackers on ``loop_factory``'s loop: ``launch_tracker(settings, store=None,
    cls=RunningTracker, **options)``. All are stopped after the test, which then fails if
    any of them counted an internal error."""
    started: list[RunningTracker] = []

    def start(
        settings: Settings,
        store: MemoryStore | None = None,
        cls: type[RunningTracker] = RunningTracker,
        **options: float,
    ) -> RunningTracker:
        running = cls(settings, store, loop_factory, **options)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
    for running in started:
        assert running.tracker.counters.internal_errors == 0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the module's own on a free loopback port (missing: a failure
    under CI=true, else a skip naming the package; see support/redis_server.py)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["python", "native"])
def udp_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the module's trackers with UDP on the pure-Python path, then on the compiled data
    plane (skipped when the extension is not built; a failure under CI=true). Module-scoped,
    so a module-scoped tracker fixture that uses it is built once per path."""
    engine: str = request.param
    if engine == "native":
        native_udp()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHOAL_ENGINE", engine)
        yield engine
