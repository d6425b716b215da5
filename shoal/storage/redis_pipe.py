"""A minimal RESP connection to one Redis, for the Redis store's hot path only.

Announces and scrapes go to a single (non-Cluster) Redis through this: the commands of one
turn of the event loop are written together (one pipeline, one ``write``), hiredis parses
the replies, and each reply settles the future of its command, in order. Everything else
(connecting to a Cluster, TLS, the sweep, the admin figures) stays with redis-py.

Why not redis-py for this too: profiled (cProfile of an in-process loop of the bench mix
against a real redis-server), the store cost the tracker 204 us of CPU per operation with
redis-py on this path, most of it redis-py's command packing, per-reply parsing and
callbacks, and a timeout scope per call (a scrape was five commands per torrent). With
this connection, the packed script replies and one script call per scrape, the benchmark's
responses per tracker CPU-second went from 0.16x to 0.51x of the memory store's over UDP
and from 0.18x to 0.64x over HTTP keep-alive (README, "Several nodes on Redis").

Each write arms one timer: when the last command written is still unanswered ``timeout``
seconds later, every waiting command fails with :class:`TimeoutError` and the connection is
closed (replies come in order, so one stuck reply stalls all behind it); the store opens a
new one on the next call.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import cast

import hiredis


class ReplyError(Exception):
    """An error reply of Redis (``-ERR ...``, ``-NOSCRIPT ...``)."""


def command(*words: bytes) -> bytes:
    """One command in RESP, from its words."""
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


class RespPipe(asyncio.Protocol):
    """One connection; :meth:`send` returns a future of the reply."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._waiting: collections.deque[asyncio.Future[object]] = collections.deque()
        self._out: list[bytes] = []
        self._lost: Exception = ConnectionError("connection to Redis closed")

    @classmethod
    async def open(cls, host: str, port: int, timeout: float, *, username: str | None = None,
                   password: str | None = None, db: int = 0) -> RespPipe:
        """Connect (within ``timeout``), authenticate and select ``db``."""
        pipe = cls(timeout)
        async with asyncio.timeout(timeout):
            await pipe._loop.create_connection(lambda: pipe, host, port)
        try:
            if password is not None:
                words = [b"AUTH", password.encode()]
                if username is not None:
                    words.insert(1, username.encode())
                await pipe.send(command(*words))
            if db:
                await pipe.send(command(b"SELECT", str(db).encode()))
        except BaseException:
            pipe.close()
            raise
        return pipe

    def send(self, data: bytes) -> asyncio.Future[object]:
        """Queue one command (RESP); it is written at the end of this loop turn."""
        future = self._loop.create_future()
        if self.closed:
            future.set_exception(self._lost)
            return future
        self._waiting.append(future)
        self._out.append(data)
        if len(self._out) == 1:
            self._loop.call_soon(self._write)
        return future

    def send_many(self, commands: Sequence[bytes]) -> list[asyncio.Future[object]]:
        return [self.send(c) for c in commands]

    def _write(self) -> None:
        out, self._out = self._out, []
        if self.closed or self._transport is None:
            return
        self._transport.write(b"".join(out))
        self._loop.call_later(self.timeout, self._expire, self._waiting[-1])

    def _expire(self, last: asyncio.Future[object]) -> None:
        if not last.done() and not self.closed:
            self._fail(TimeoutError(f"Redis did not answer within {self.timeout} s"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        self._lost = error
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if not self.closed:
            self._fail(ConnectionError("connection to Redis closed"))

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(ConnectionError(f"bad reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._fail(ConnectionError("unexpected reply from Redis"))
                return
            future = waiting.popleft()
            if future.done():  # its caller gave up
                continue
            if isinstance(reply, ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._fail(ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
