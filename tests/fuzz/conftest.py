"""Hypothesis profiles for the fuzzers: ``ci`` (the default, a few seconds per parser) and
``long`` (``SHOAL_FUZZ=long``, for a local hunt). Registered here, applied per test through
:data:`fuzz.corpus.FUZZ`, so the other tests' hypothesis settings stay untouched."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_SHARED = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

# No example database on CI: a run is its own, and a failure prints the blob to replay it.
settings.register_profile("ci", max_examples=500, database=None, **_SHARED)
settings.register_profile("long", max_examples=20_000, **_SHARED)
