"""A connection's pipelined requests are answered a few per turn of the event loop, so one
client with hundreds of requests in flight never keeps the others waiting for long."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from shoal.config import Settings
from shoal.server.app import Tracker
from shoal.server.http import _TURN


class Transport:
    """Enough of an asyncio transport for one connection, recording what is written."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.out.extend(data)

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def request(n: int) -> bytes:
    return (f"GET /announce?info_hash={'a' * 20}&peer_id=-TR0000-{n:012d}&port={1000 + n}"
            "&uploaded=0&downloaded=0&left=1 HTTP/1.1\r\nHost: x\r\n\r\n").encode()


def test_pipelined_requests_are_answered_a_few_per_turn_of_the_loop_in_order() -> None:
    base = Settings()
    settings = dataclasses.replace(
        base, udp=dataclasses.replace(base.udp, enabled=False),
        storage=dataclasses.replace(base.storage, persist=False))

    async def main() -> None:
        frontend = Tracker(settings).http
        conn = frontend.protocol()
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(b"".join(request(n) for n in range(100)))
        assert len(transport.out) == _TURN  # the rest waits for later turns
        for _ in range(100):
            if len(transport.out) == 100:
                break
            await asyncio.sleep(0)
        replies = b"".join(transport.out)
        assert replies.count(b"HTTP/1.1 200 OK") == 100
        incomplete = [int(part.split(b"e", 1)[0]) for part in
                      replies.split(b"10:incompletei")[1:]]
        assert incomplete == list(range(1, 101))  # answered in the order asked

    asyncio.run(main())
