"""The compiled UDP data plane for tests: the module, or a skip (a failure under CI=true,
where the extension must have been built)."""

from __future__ import annotations

import os
from types import ModuleType

import pytest


def native_udp() -> ModuleType:
    """``shoal._native_udp``; skips the test when it is not built (fails on CI)."""
    try:
        from shoal import _native_udp
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the compiled extension shoal._native_udp is not built: {exc}")
        pytest.skip(f"the compiled extension shoal._native_udp is not built: {exc}")
    return _native_udp
