"""Type stub of the compiled UDP data plane (shoal/_native/udp_module.c)."""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

BATCH: int
MESSAGES: tuple[str, ...]

Item = tuple[int, int, Any, bytes, bytes]
"""(action, transaction id, AnnounceRequest or info hashes, packed client ip, sockaddr)."""

def blake2b(
    data: bytes, *, digest_size: int = 64, key: bytes = b"", salt: bytes = b"",
    person: bytes = b"",
) -> bytes: ...

class Engine:
    allow_ip_param: int
    def __init__(
        self,
        fd: int,
        key: bytes,
        ttl: int,
        skew: int,
        allow_ip_param: bool,
        announce: type,
        events: tuple[Any, ...],
        latency_bounds: tuple[float, ...],
    ) -> None: ...
    def drain(
        self, now: int, handler: Callable[[list[Item]], Sequence[bytes | None]], max_batches: int
    ) -> int: ...
    def decide(
        self, data: bytes, source: bytes, now: int
    ) -> tuple[int, int | None, str, bytes | None, Item | None]: ...
    def sendto(self, reply: bytes, sockaddr: bytes) -> None: ...
    def issue(self, addr: bytes, now: int) -> int: ...
    def window(self, conn_id: int, addr: bytes, now: int) -> tuple[int, int] | None: ...
    def set_banned(
        self, v4: Iterable[tuple[int, Iterable[int]]], v6: Iterable[tuple[int, Iterable[int]]]
    ) -> None: ...
    def admits(self, ip: bytes) -> bool: ...
    def counts(self) -> tuple[tuple[tuple[int, int], ...], float]: ...
    @property
    def attached(self) -> bool: ...
    def attach_store(
        self,
        table: Any,
        interval: int,
        jitter: int,
        default_numwant: int,
        max_numwant: int,
        torrents: int,
        hashes: bytes,
        client_allow: tuple[bytes, ...],
        client_deny: tuple[bytes, ...],
        reasons: tuple[str, str, str],
        record_completed: bool,
        seed: int,
        min_interval: int = 0,
    ) -> tuple[str, ...]: ...
    def detach_store(self) -> bytes: ...
    def take_completed(self) -> bytes: ...
