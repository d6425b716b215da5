"""Fixtures for the real-client tests: one tracker and clients per test, all stopped after it."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from .clients import DEBIAN_PACKAGE, ProcessRegistry, ipv6_loopback_available, missing_binaries


def cannot_run(message: str) -> NoReturn:
    """Fail on CI (where every real-client test must run), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- CI must run the real-client tests", pytrace=False)
    pytest.skip(message)


def require_clients(*names: str) -> None:
    """Fail (on CI) or skip (elsewhere) when a client binary is not installed."""
    missing = missing_binaries(names)
    if missing:
        packages = sorted({DEBIAN_PACKAGE.get(name, name) for name in missing})
        cannot_run(
            f"missing BitTorrent client(s) {', '.join(missing)}: install Debian's "
            f"{' '.join(packages)} (scripts/install-test-deps.sh)"
        )


def require_ipv6_loopback() -> None:
    if not ipv6_loopback_available():
        cannot_run("this machine cannot bind to the IPv6 loopback address ::1")


@pytest.fixture
def processes() -> Iterator[ProcessRegistry]:
    """Registry of the processes a test starts; every one is stopped at teardown."""
    registry = ProcessRegistry()
    try:
        yield registry
    finally:
        registry.stop_all()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, None]:
    """On failure, attach the tails of the tracker's and clients' logs to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    registry = funcargs.get("processes")
    if not isinstance(registry, ProcessRegistry):
        return
    for title, text in registry.report():
        report.sections.append((f"e2e: {title}", text))
