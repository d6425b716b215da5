"""Fuzzing the config file loader (shoal.config.load_file).

Whatever a TOML file holds, ``load_file`` returns settings or raises ConfigError naming
the problem: never another exception (an operator gets a message, not a traceback).
Only the loader's contract is fuzzed, not what each key means.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.config import SECTIONS, ConfigError, Settings, load_file

from .corpus import FUZZ, seeds

KNOWN_KEYS = sorted({(s, f) for s, cls in SECTIONS.items() for f in cls.__dataclass_fields__})

# Found by fuzzing; load_file lets these escape as other exceptions than ConfigError.
KNOWN_BUGS: dict[str, str] = {}  # inputs that once failed stay in the corpus (all fixed)


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file, rewritten for every example (a directory per example costs more than
    the parse)."""
    return tmp_path_factory.mktemp("config") / "shoal.toml"


def load_bytes(path: Path, data: bytes) -> Settings | None:
    """load_file on ``data`` written to ``path``; None when it raised ConfigError."""
    path.write_bytes(data)
    try:
        settings = load_file(path)
    except ConfigError as exc:
        assert str(exc)
        return None
    assert isinstance(settings, Settings)
    return settings


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(type(value))


# 64-bit integers, as TOML defines them (bigger ones are the known bugs above).
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 65535, 65536, 6969, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "0.0.0.0", "::", "10.0.0.0/8", "nope", "DEBUG", "json", "auto",
                     "python", "abc", "0f", "true", "1"]),
    st.datetimes(timezones=st.none()),
    st.dates(),
)
toml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=3),
    ),
    max_leaves=8,
)
section_names = st.one_of(st.sampled_from(list(SECTIONS)), st.text(min_size=1, max_size=8))


@st.composite
def config_files(draw: st.DrawFn) -> str:
    """Tables of known and made-up sections, holding known and made-up keys with values of
    every TOML type; sometimes a section that is not a table at all."""
    lines: list[str] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(0, 4))):
        section = draw(section_names)
        if section in used:
            continue
        used.add(section)
        if draw(st.integers(0, 9)) == 0:
            lines.insert(0, f"{toml_string(section)} = {toml_value(draw(toml_values))}")
            continue
        lines.append(f"[{toml_string(section)}]")
        keys: set[str] = set()
        for _ in range(draw(st.integers(0, 5))):
            if draw(st.booleans()):
                key = draw(st.sampled_from([k for s, k in KNOWN_KEYS if s == section] or ["x"]))
            else:
                key = draw(st.text(min_size=1, max_size=8))
            if key in keys:
                continue
            keys.add(key)
            lines.append(f"{toml_string(key)} = {toml_value(draw(toml_values))}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(config_files())
@example('[http]\nrequest_timeout = nan\n')
@example('[udp]\nsecret = "xyz"\nconnection_id_ttl = 99999\n')
@example('tracker = 5\n')
def test_generated_tables_load_or_raise_config_error(path: Path, text: str) -> None:
    load_bytes(path, text.encode("utf-8"))


@FUZZ
@given(st.one_of(st.text(max_size=200),
                 st.lists(st.sampled_from(["[", "]", "[[", "]]", "=", '"', "'", "\n", "a", "1",
                                           "http", "port", ".", ",", "{", "}", "#", "\\u00",
                                           "1e999", "0x", "inf", "tracker"]),
                          max_size=40).map("".join)))
def test_any_text_loads_or_raises_config_error(path: Path, text: str) -> None:
    load_bytes(path, text.encode("utf-8"))


@pytest.mark.parametrize("data", seeds("config", KNOWN_BUGS))
def test_corpus(path: Path, data: bytes) -> None:
    load_bytes(path, data)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_file(tmp_path / "absent.toml")
