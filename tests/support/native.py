"""The compiled UDP data plane for tests: the module, or a skip (a failure under CI=true,
where the extension must have been built)."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def native_udp() -> ModuleType:
    """``shoal._native_udp``; skips the test when it is not built (fails on CI)."""
    try:
        from shoal import _native_udp
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the compiled extension shoal._native_udp is not built: {exc}")
        pytest.skip(f"the compiled extension shoal._native_udp is not built: {exc}")
    return _native_udp


def extension_sources(name: str) -> list[Path]:
    """The C sources of extension ``name`` (e.g. ``"shoal._native_udp"``) as setup.py lists
    them, so the sanitizer and fuzzing builds compile exactly what ``pip install`` does."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "Extension" and node.args
                and ast.literal_eval(node.args[0]) == name):
            for keyword in node.keywords:
                if keyword.arg == "sources":
                    return [ROOT / path for path in ast.literal_eval(keyword.value)]
    raise LookupError(f"setup.py builds no extension {name}")
