"""The fuzzers' shared pieces: the active hypothesis profile and the seed corpus.

``tests/fuzz/corpus/<parser>/`` holds hand-written interesting inputs and every input that
ever made a fuzzer fail; each parser's module replays its directory through the same
property the fuzzer checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

CORPUS = Path(__file__).resolve().parent / "corpus"
PROFILE = os.environ.get("SHOAL_FUZZ", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"SHOAL_FUZZ must be ci or long, not {PROFILE!r}")

FUZZ = settings(settings.get_profile(PROFILE))
"""Decorator for every fuzz test: the bounded profile chosen by ``SHOAL_FUZZ``."""


def seeds(parser: str, known_bugs: dict[str, str] | None = None) -> list[object]:
    """pytest params, one per file in ``corpus/<parser>/`` (id: the file name). Files named
    in ``known_bugs`` (name -> the bug) are strict xfails: they must keep failing until the
    bug is fixed, and then the entry must go."""
    known = dict(known_bugs or {})
    files = sorted(p for p in (CORPUS / parser).iterdir() if p.is_file())
    missing = set(known) - {p.name for p in files}
    if missing:
        raise ValueError(f"known_bugs names files not in corpus/{parser}: {sorted(missing)}")
    params: list[object] = []
    for path in files:
        marks = []
        if path.name in known:
            marks.append(pytest.mark.xfail(strict=True, reason=known[path.name]))
        params.append(pytest.param(path.read_bytes(), id=path.name, marks=marks))
    return params
