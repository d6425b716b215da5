"""Fixtures shared by every test directory.

This conftest lives in tests/ (no ``__init__.py``), so pytest puts tests/ on ``sys.path``
before collecting anything; the helper package tests/support/ is then importable as
``support`` from any test module.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator

import pytest
from support.engines import ENGINES, require_engine
from support.native import native_udp
from support.redis_server import RedisServer
from support.running import RunningTracker, loop_factories

from shoal.config import Settings
from shoal.storage.memory import ENGINE_ENV, MemoryStore

# -- the two engine passes ----------------------------------------------------------------
#
# `make test` runs the suite on both in-memory engines: whole on the default one (the
# compiled engine when built), and with SHOAL_ENGINE=python, with --engine-pass=python,
# only the tests whose run depends on that choice. A test depends on it when anything it
# runs reads the engine choice: MemoryStore() with engine "auto", a tracker (its store and
# its UDP path), a `shoal serve` or `python -m bench` process. These modules do not, and
# run in the default pass only:
RUN_ONCE = {
    "protocol/": "the codecs: bytes in, values out; no store, no tracker",
    "fuzz/": "fuzzers of the codecs and of the config loader, the compiled UDP codec against "
             "the Python one, libFuzzer on the C code",
    "engine/": "the engine layer's objects (swarm, rules, policy, accounting) built directly",
    "storage/test_engines_agree.py": "names both engines (a store of each)",
    "bench/test_tail.py": "the tail report's pure functions, on fixed inputs",
    "storage/test_native_c_api.py": "names the compiled engine",
    "storage/test_native_asan.py": "the compiled engine under AddressSanitizer",
    "storage/test_memory_store.py": "each store names its engine (a class per engine, or "
                                    "an `engine` parameter)",
    "storage/test_redis_store.py": "the Redis store, which has no engine",
    "storage/test_redis_urls.py": "Redis URL parsing",
    "storage/test_accounts.py": "the accounts database (SQLite, PostgreSQL)",
    "storage/test_sqlite.py": "snapshots into SQLite, of stores that name their engine",
    "test_config.py": "settings parsing (the engine choice with explicit environments)",
    "test_contrib.py": "packaging: what a plain install brings",
    "test_native_udp.py": "the compiled UDP codec and rules against the Python ones",
    "test_native_udp_asan.py": "the compiled UDP code under AddressSanitizer",
    "test_native_data_plane_asan.py": "the compiled data plane under AddressSanitizer",
    "server/test_udp_native_answer.py": "each tracker names its engine (SHOAL_ENGINE unset)",
    "server/test_http_native_answer.py": "each tracker names its engine (SHOAL_ENGINE unset)",
}
# Besides, a test with an `engine` or `udp_engine` parameter runs on the engine it names,
# on both in each pass: run once too. Whether a run-once test really reads no engine choice
# is checked: it runs with SHOAL_ENGINE set to a value every reader refuses, so a test
# (or a fixture, or a process it starts) that reads it fails; but for `udp_engine` tests,
# whose fixture sets SHOAL_ENGINE to the engine it names.
ENGINE_PARAMS = ("engine", "udp_engine")
UNREADABLE_ENGINE = "run-once-test-reads-no-engine"


def runs_once(item: pytest.Item) -> bool:
    path = item.path.as_posix()
    where = path[path.rindex("/tests/") + len("/tests/"):]
    if any(where.startswith(prefix) for prefix in RUN_ONCE):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(name in params for name in ENGINE_PARAMS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine-pass", choices=["all", "python"], default="all",
        help="all: every test (the default); python: only the tests whose run depends on "
             "the engine choice (set SHOAL_ENGINE=python with it): `make test`'s second pass")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--engine-pass") != "python":
        return
    if os.environ.get(ENGINE_ENV) != "python":
        raise pytest.UsageError("--engine-pass=python runs with SHOAL_ENGINE=python")
    once = [item for item in items if runs_once(item)]
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not runs_once(item)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """A run-once test (and the module fixtures it sets up or tears down) runs with an
    engine choice nobody accepts: reading it fails the test (see RUN_ONCE)."""
    if not runs_once(item) or "udp_engine" in item.fixturenames:  # that one sets it
        yield
        return
    before = os.environ.get(ENGINE_ENV)
    os.environ[ENGINE_ENV] = UNREADABLE_ENGINE
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENGINE_ENV, None)
        else:
            os.environ[ENGINE_ENV] = before


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
