"""``shoal user ...`` and ``shoal torrent ...`` against a running private tracker."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from support.running import RunningTracker

from shoal.cli import main
from shoal.config import Settings

TOKEN = "cli-token"
H1 = "c1" * 20


@pytest.fixture
def rt(launch_tracker: Callable[..., RunningTracker]) -> RunningTracker:
    base = Settings()
    return launch_tracker(dataclasses.replace(
        base,
        tracker=dataclasses.replace(base.tracker, mode="private"),
        http=dataclasses.replace(base.http, hosts=["127.0.0.1"], port=0),
        udp=dataclasses.replace(base.udp, enabled=False),
        admin=dataclasses.replace(base.admin, port=0, api_token=TOKEN),
    ))


def run(rt: RunningTracker, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--url", rt.admin_url, "--token", TOKEN])
    return code, capsys.readouterr().out


def test_user_add_show_rotate_and_disable(rt: RunningTracker,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(rt, capsys, "user", "add", "5", "--no-leech")
    added = json.loads(out)
    assert code == 0 and (added["id"], added["can_leech"]) == (5, False)
    code, out = run(rt, capsys, "user", "rotate", "5")
    assert code == 0 and json.loads(out)["passkey"] != added["passkey"]
    code, out = run(rt, capsys, "user", "disable", "5")
    assert code == 0 and json.loads(out)["enabled"] is False
    code, out = run(rt, capsys, "user", "show", "5", "--stats")
    assert code == 0 and json.loads(out)["totals"]["announces"] == 0


def test_torrent_add_show_and_remove(rt: RunningTracker,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(rt, capsys, "torrent", "add", H1, "--freeleech")
    assert code == 0 and json.loads(out)["download_factor"] == 0
    code, out = run(rt, capsys, "torrent", "show", H1, "--peers")
    assert code == 0 and json.loads(out)["peers"] == []
    assert run(rt, capsys, "torrent", "remove", H1)[0] == 0
    assert run(rt, capsys, "torrent", "show", H1)[0] == 4


def test_an_api_refusal_is_exit_status_4_with_the_reason(
        rt: RunningTracker, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "show", "1", "--url", rt.admin_url, "--token", TOKEN]) == 4
    assert "404 no user 1" in capsys.readouterr().err


def test_a_wrong_token_is_refused(rt: RunningTracker,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "show", "1", "--url", rt.admin_url, "--token", "nope"]) == 4
    assert "401" in capsys.readouterr().err


def test_no_token_anywhere_is_a_settings_error(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_ADMIN_API_TOKEN", raising=False)
    monkeypatch.delenv("SHOAL_CONFIG", raising=False)
    assert main(["user", "show", "1", "--url", "http://127.0.0.1:9"]) == 2
    assert "no API token" in capsys.readouterr().err
