"""The OpenAPI document matches the API: schemathesis generates requests from it against a
running private tracker, and every reply must be no 5xx, carry a documented status and
content type, and match its documented schema. Left out: the check that every
schema-valid request is accepted, since a JSON schema cannot say which strings are real
networks (``banned_networks``) or which hashes are taken; those are refused with a 400 or
409 that says why."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
from support.running import RunningTracker

from shoal.config import Settings
from shoal.server.api import openapi

try:
    import schemathesis
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - the dev extra installs it
    if os.environ.get("CI") == "true":
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'", pytrace=False)
    pytest.skip("schemathesis is not installed: pip install -e '.[dev]'",
                allow_module_level=True)

TOKEN = "schema-token"


@schemathesis.serializer("application/x-ndjson")
def json_lines(ctx: Any, value: Any) -> bytes:
    """The bulk import's body is text (JSON lines): sent as UTF-8."""
    return value.encode() if isinstance(value, str) else str(value).encode()


schema = schemathesis.openapi.from_dict(openapi())


@pytest.fixture(scope="module")
def tracker() -> Iterator[RunningTracker]:
    base = Settings()
    with RunningTracker(dataclasses.replace(
        base,
        tracker=dataclasses.replace(base.tracker, mode="private"),
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0),
        udp=dataclasses.replace(base.udp, enabled=False),
        admin=dataclasses.replace(base.admin, port=0, api_token=TOKEN),
    )) as running:
        yield running


@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_every_reply_matches_the_openapi_document(case: Any, tracker: RunningTracker) -> None:
    case.call_and_validate(base_url=tracker.admin_url,
                           headers={"Authorization": f"Bearer {TOKEN}"},
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])
