"""The ``storage.redis_url`` setting: one Redis URL, or several seed nodes of a Redis
Cluster. Kept apart from the store so ``shoal check-config`` reads it without loading the
Redis client."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


def redis_urls(value: str | Sequence[str]) -> list[str]:
    """The URLs of ``storage.redis_url``: one, or several seed nodes of a Redis Cluster,
    separated by commas or spaces. Raises ValueError for anything else."""
    urls = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    if not urls:
        raise ValueError("no Redis URL given")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"not a redis:// or rediss:// URL with a host: {url!r}")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
    return urls


def describe_url(url: str) -> str:
    """``url`` without its password, for logs and stats."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()
