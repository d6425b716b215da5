"""The two in-memory engines, for tests that run on both: the compiled one is skipped only
when it is not built, and then only outside CI (``CI=true`` makes its absence a failure)."""

from __future__ import annotations

import os

import pytest

from shoal.storage.memory import native_available

ENGINES = ("python", "native")


def require_engine(engine: str) -> None:
    """Skip (or, in CI, fail) a test of the native engine when it is not built."""
    if engine == "native" and not native_available():
        message = "the compiled store shoal._native_store is not built"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI builds it: `make` with gcc and the Python headers)")
        pytest.skip(message)
