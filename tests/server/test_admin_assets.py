"""A broken install without the dashboard's files still tracks and serves the admin figures."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from unittest import mock

import pytest

from shoal.config import Settings, apply_assignments
from shoal.server.app import Tracker


def test_missing_dashboard_files_leave_tracking_and_figures_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = apply_assignments(
        Settings(),
        ["http.hosts=127.0.0.1", "http.port=0", "udp.enabled=false", "admin.port=0",
         "storage.persist=false"],
    )

    async def scenario() -> tuple[int, dict[str, object], int]:
        tracker = Tracker(settings)
        missing = FileNotFoundError("dashboard.html")
        with mock.patch("shoal.server.admin.load_assets", side_effect=missing):
            await tracker.start()
        try:
            base = f"http://127.0.0.1:{tracker.admin_listener.port}"

            def fetch(path: str) -> tuple[int, bytes]:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(base + path, timeout=5) as reply:
                        return reply.status, reply.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read()

            health, _ = await asyncio.to_thread(fetch, "/health")
            _, stats = await asyncio.to_thread(fetch, "/stats")
            page, _ = await asyncio.to_thread(fetch, "/")
            return health, json.loads(stats), page
        finally:
            await tracker.shutdown()

    with caplog.at_level(logging.ERROR, logger="shoal"):
        health, stats, page = asyncio.run(scenario())
    assert health == 200
    assert "torrents" in json.dumps(stats)
    assert page == 404
    assert any("dashboard unavailable" in r.getMessage() for r in caplog.records)
