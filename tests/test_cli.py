"""The ``shoal`` command: print-config, check-config, settings layering, and ``serve``."""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import cli
from shoal.config import ConfigError, Settings
from shoal.protocol import bencode

WAIT = 10.0


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def settings_from(argv: list[str], env: dict[str, str]) -> Settings:
    return cli.build_settings(cli.parser().parse_args(["serve", *argv]), env)


# print-config and check-config


def test_print_config_is_toml_equal_to_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["print-config"], capsys)
    assert code == 0
    assert tomllib.loads(out) == dataclasses.asdict(Settings())


def test_check_config_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.toml"
    path.write_text('[http]\nport = 8080\nhosts = ["127.0.0.1"]\n')
    code, out, _ = run_main(["check-config", str(path)], capsys)
    assert code == 0
    assert "OK" in out


def test_check_config_accepts_the_printed_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, printed, _ = run_main(["print-config"], capsys)
    path = tmp_path / "defaults.toml"
    path.write_text(printed)
    assert run_main(["check-config", str(path)], capsys)[0] == 0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[http]\nprot = 8080\n", "http.prot"),
        ("[http]\nport = 80800\n", "http.port"),
        ('[tracker]\ninterval = "soon"\n', "tracker.interval"),
        ("[nope]\n", "[nope]"),
        ("[http\n", "not valid TOML"),
    ],
)
def test_check_config_names_the_bad_key_or_value_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, _, err = run_main(["check-config", str(path)], capsys)
    assert code == 1
    assert named in err
    assert str(path) in err


def test_check_config_of_a_missing_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["check-config", str(tmp_path / "absent.toml")], capsys)
    assert code == 1
    assert "cannot read" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("shoal ")


# Settings for serve: file < environment < flags


def test_env_sets_values() -> None:
    settings = settings_from([], {"SHOAL_HTTP_PORT": "7000", "SHOAL_UDP_ENABLED": "false"})
    assert settings.http.port == 7000
    assert settings.udp.enabled is False


def test_set_flag_sets_any_value() -> None:
    settings = settings_from(["--set", "tracker.interval=600", "--set", "admin.enabled=no"], {})
    assert settings.tracker.interval == 600
    assert settings.admin.enabled is False


def test_named_flags() -> None:
    settings = settings_from(["--host", "127.0.0.1", "--host", "::1", "--http-port", "1",
                              "--udp-port", "2", "--log-level", "debug", "--log-format", "json"],
                             {})
    assert settings.http.hosts == ["127.0.0.1", "::1"]
    assert settings.udp.hosts == ["127.0.0.1", "::1"]
    assert (settings.http.port, settings.udp.port) == (1, 2)
    assert (settings.log.level, settings.log.format) == ("debug", "json")


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "shoal.toml"
    path.write_text("[http]\nport = 1000\nmax_headers = 10\nmax_connections = 5\n")
    env = {"SHOAL_HTTP_PORT": "2000", "SHOAL_HTTP_MAX_HEADERS": "20"}
    settings = settings_from(["--config", str(path), "--http-port", "3000"], env)
    assert settings.http.port == 3000
    assert settings.http.max_headers == 20
    assert settings.http.max_connections == 5
    settings = settings_from(["--config", str(path), "--set", "http.max_headers=30"], env)
    assert (settings.http.port, settings.http.max_headers) == (2000, 30)


def test_config_file_from_shoal_config_variable(tmp_path: Path) -> None:
    path = tmp_path / "shoal.toml"
    path.write_text("[http]\nport = 1234\n")
    assert settings_from([], {"SHOAL_CONFIG": str(path)}).http.port == 1234


def test_config_flag_wins_over_shoal_config_variable(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("[http]\nport = 1\n")
    b.write_text("[http]\nport = 2\n")
    assert settings_from(["--config", str(b)], {"SHOAL_CONFIG": str(a)}).http.port == 2


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"SHOAL_HTTP_NOPE": "1"}, "http.nope"),
        ([], {"SHOAL_NOPE_PORT": "1"}, "SHOAL_NOPE_PORT"),
        (["--set", "nope.port=1"], {}, "[nope]"),
        (["--set", "http.port=x"], {}, "http.port"),
        (["--set", "http.port"], {}, "section.key=value"),
    ],
)
def test_unknown_or_bad_settings_are_errors(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(argv, env)
    assert message in str(info.value)


def test_serve_with_a_bad_setting_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("SHOAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SHOAL_HTTP_PROT", "1")
    code, _, err = run_main(["serve"], capsys)
    assert code == 2
    assert "http.prot" in err


# shoal serve, as a process


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(extra)
    return env


class Process:
    """``python -m shoal`` with its stderr read line by line in a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env or clean_env(), text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no log line matching {pattern!r}; log so far: {self.log}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"exited before logging {pattern!r}: {self.log}"
            self.log.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def rest_of_log(self) -> str:
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                break
            if line is None:
                break
            self.log.append(line)
        return "".join(self.log)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in started:
        p.kill()


SERVE = ["serve", "--host", "127.0.0.1", "--http-port", "0",
         "--set", "udp.enabled=false", "--set", "admin.enabled=false"]


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("parser", ["auto", "python"])
def test_serve_logs_the_announce_url_serves_and_stops_on_sigterm(
    processes: list[Process], parser: str
) -> None:
    p = Process(*SERVE, "--set", f"http.parser={parser}")
    processes.append(p)
    found = p.wait_for(r"serving http://127\.0\.0\.1:(\d+)/announce")
    line = p.log[-1]
    assert "event loop" in line
    assert ("pure Python fallback" in line) is (parser == "python")
    port = int(found.group(1))
    reply = http_get(port, "/announce?info_hash=x")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert bencode.decode(body) == {b"failure reason": b"info_hash must be 20 bytes"}
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(WAIT) == 0
    assert "stopped" in p.rest_of_log()


def test_serve_stops_on_sigint_with_exit_0(processes: list[Process]) -> None:
    p = Process(*SERVE)
    processes.append(p)
    p.wait_for(r"serving http://")
    p.proc.send_signal(signal.SIGINT)
    assert p.proc.wait(WAIT) == 0


def test_serve_reads_settings_from_the_environment(processes: list[Process]) -> None:
    env = clean_env(SHOAL_HTTP_HOSTS="127.0.0.1", SHOAL_HTTP_PORT="0",
                    SHOAL_UDP_ENABLED="false", SHOAL_ADMIN_ENABLED="false",
                    SHOAL_TRACKER_FULL_SCRAPE="true")
    p = Process("serve", env=env)
    processes.append(p)
    port = int(p.wait_for(r"serving http://127\.0\.0\.1:(\d+)/announce").group(1))
    _, _, body = http_get(port, "/scrape").partition(b"\r\n\r\n")
    assert bencode.decode(body) == {b"files": {}}
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(WAIT) == 0


def test_serve_on_a_busy_port_exits_1_with_the_reason(processes: list[Process]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = Process("serve", "--host", "127.0.0.1", "--http-port", str(port),
                    "--set", "udp.enabled=false", "--set", "admin.enabled=false")
        processes.append(p)
        assert p.proc.wait(WAIT) == 1
        assert f"cannot listen on 127.0.0.1:{port}" in p.rest_of_log()
