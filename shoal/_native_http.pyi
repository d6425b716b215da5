"""Type stub of the compiled HTTP data plane (shoal/_native/http_module.c)."""

from collections.abc import Iterable
from typing import Any

MAX_REQUESTS: int
ANNOUNCE: int
SCRAPE: int

def parse(
    data: bytes, max_request_line: int, max_header_bytes: int, max_headers: int,
    real_ip_header: bytes | None,
) -> tuple[int, int, bytes, bytes, bytes | None, bool, bool] | None: ...
def announce_query(
    query: bytes, allow_ip_param: bool
) -> tuple[bytes, bytes, int, int, int, int, int, int, int] | None: ...
def scrape_query(query: bytes, max_hashes: int) -> list[bytes] | None: ...
def key(text: bytes) -> int: ...
def real_ip(
    value: bytes, peer_ip: bytes, v4: Iterable[tuple[int, Iterable[int]]],
    v6: Iterable[tuple[int, Iterable[int]]],
) -> bytes | None: ...

class HttpAnswer:
    @property
    def kept(self) -> int: ...
    close_after: int
    allow_ip_param: int
    max_scrape_hashes: int
    def __init__(
        self,
        max_request_line: int,
        max_header_bytes: int,
        max_headers: int,
        real_ip_header: bytes | None,
        max_scrape_hashes: int,
        allow_ip_param: bool,
        latency_bounds: tuple[float, ...],
    ) -> None: ...
    @property
    def attached(self) -> bool: ...
    def answer(self, data: bytes, peer_ip: bytes, trusted: bool, now: int) -> bytes | None: ...
    def accept(
        self, listen_fd: int, now: int, max: int, python_open: int = 0
    ) -> list[tuple[int, bytes, bytes, bool, bool]]: ...
    def keep_start(
        self, per_ip: dict[bytes, int], room: int, max_per_ip: int, first_byte_timeout: float,
        keepalive_timeout: float,
    ) -> int: ...
    def keep_stop(self) -> None: ...
    def serve(self, now: int, max: int) -> list[tuple[int, bytes, bytes, bool, bool]]: ...
    def sweep(self) -> int: ...
    def evict_oldest(self) -> bool: ...
    def attach(
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
    def detach(self) -> bytes: ...
    def take_completed(self) -> bytes: ...
    def set_banned(
        self, v4: Iterable[tuple[int, Iterable[int]]], v6: Iterable[tuple[int, Iterable[int]]]
    ) -> None: ...
    def set_proxies(
        self, v4: Iterable[tuple[int, Iterable[int]]], v6: Iterable[tuple[int, Iterable[int]]]
    ) -> None: ...
    def counts(self) -> tuple[tuple[tuple[int, int], ...], float]: ...
