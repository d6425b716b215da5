"""A tracker running in-process, on an event loop of its own in a daemon thread.

Runs :class:`shoal.server.app.Tracker` the way ``shoal serve`` does minus the signal
handlers, so tests can talk to it with blocking sockets (or a browser). Used directly as a
context manager, or through the ``loop_factory`` and ``start_tracker`` fixtures of
tests/conftest.py, which also check that no request ended in an internal error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from shoal.config import Settings
from shoal.server.app import Tracker
from shoal.storage.memory import MemoryStore
from support.ports import free_port

T = TypeVar("T")

TIMEOUT = 10.0  # upper bound on starting, stopping and each call into the loop


def shared_ports(settings: Settings) -> Settings:
    """Port 0 on several hosts binds the first host on a port the kernel picks, then the
    others on that port, which another process may hold there meanwhile (the tests run in
    parallel): such a listener gets a port of this test process's own block instead."""
    for name in ("http", "udp"):
        section = getattr(settings, name)
        if section.port == 0 and len(section.hosts) > 1:
            settings = dataclasses.replace(
                settings, **{name: dataclasses.replace(section, port=free_port())})
    return settings


class RunningTracker:
    """A :class:`Tracker` started in a daemon thread, run until :meth:`stop` (or
    :meth:`request_stop`), then shut down with ``grace`` seconds for requests in flight."""

    def __init__(
        self,
        settings: Settings,
        store: MemoryStore | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        *,
        grace: float = 1.0,
        persist: bool = False,
    ) -> None:
        if not persist:  # tests keep nothing on disk unless they ask to
            settings = dataclasses.replace(
                settings, storage=dataclasses.replace(settings.storage, persist=False)
            )
        settings = shared_ports(settings)
        self.tracker = Tracker(settings, store)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._grace = grace
        self._ready = threading.Event()

        def run() -> None:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(self._main())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not self._ready.wait(TIMEOUT):
            raise TimeoutError("tracker did not start")
        if self.error is not None:
            raise self.error

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await self.tracker.start()
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self.tracker.wait_stopped()
        finally:
            await self.tracker.shutdown(grace=self._grace)

    def __enter__(self) -> RunningTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Calls into the tracker's loop (so they never race a request being handled).

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the tracker's loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def in_loop(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the tracker's loop and return its result."""

        async def call() -> T:
            return fn()

        return self.run(call())

    # Where it listens.

    def listener(self, kind: str, host: str | None = None) -> tuple[str, int]:
        """Host and port of the first ``kind`` listener (on ``host``, if given)."""
        for found in self.tracker.listeners:
            if found.kind == kind and host in (None, found.host):
                return found.host, found.port
        raise LookupError(f"no {kind} listener" + (f" on {host}" if host else ""))

    def port(self, kind: str = "http") -> int:
        """The one port every ``kind`` listener is bound to."""
        (port,) = {x.port for x in self.tracker.listeners if x.kind == kind}
        return port

    @property
    def admin_url(self) -> str:
        listener = self.tracker.admin_listener
        assert listener is not None
        return f"http://127.0.0.1:{listener.port}"

    # Stopping.

    def request_stop(self) -> None:
        """Ask the tracker to shut down, without waiting for it (see :meth:`join`)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.tracker.request_stop)

    def join(self) -> None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "tracker did not stop"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.request_stop()
            self.join()


def loop_factories() -> list[Any]:
    """asyncio's loop and, when installed, uvloop (as ``shoal`` uses), as pytest params."""
    factories: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        return factories
    return [*factories, pytest.param(uvloop.new_event_loop, id="uvloop")]
