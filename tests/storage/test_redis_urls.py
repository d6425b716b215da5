"""The ``storage.redis_url`` setting, read without a Redis server."""

from __future__ import annotations

import pytest

from shoal.storage.redis_urls import describe_url, redis_urls


def test_urls_are_one_or_several_seed_nodes() -> None:
    assert redis_urls("redis://a:1") == ["redis://a:1"]
    assert redis_urls("redis://a:1, rediss://b:2") == ["redis://a:1", "rediss://b:2"]
    for bad in ("", "http://a:1", "redis://", "redis://a:x"):
        with pytest.raises(ValueError):
            redis_urls(bad)


def test_described_url_hides_the_password() -> None:
    assert describe_url("redis://:sesame@h:1/0") == "redis://:***@h:1/0"
    assert describe_url("rediss://me:sesame@h:1") == "rediss://me:***@h:1"
    assert describe_url("redis://h:1") == "redis://h:1"
