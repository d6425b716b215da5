"""The ``shoal`` command: print-config, check-config, settings layering, and ``serve``."""

from __future__ import annotations

import dataclasses
import json
import logging
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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.engines import require_engine
from support.running import RunningTracker

from shoal import cli
from shoal.config import ConfigError, Settings, apply_assignments
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


def test_check_config_reports_every_problem_one_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[tracker]\nintreval = 60\nmin_interval = 4000\n'
                    '[http]\nport = "x"\n[access]\ntorrents = "allow"\n')
    code, _, err = run_main(["check-config", str(path)], capsys)
    assert code == 1
    assert err.splitlines() == [
        f"{path}: unknown key tracker.intreval; did you mean tracker.interval?",
        f"{path}: http.port: expected int, got 'x'",
        f"{path}: tracker.min_interval: 4000 is above tracker.interval (1800)",
        f"{path}: access.torrents: 'allow' needs access.torrent_list (a file)",
    ]


def test_check_config_names_the_list_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bans = tmp_path / "bans.txt"
    bans.write_text("# bans\n10.0.0.0/8\n10.0.0.0/99\n")
    path = tmp_path / "shoal.toml"
    path.write_text(f'[access]\nban_list = "{bans}"\n')
    code, _, err = run_main(["check-config", str(path)], capsys)
    assert code == 1
    assert err == f"{path}: access.ban_list: {bans}:3: not a network (CIDR): '10.0.0.0/99'\n"


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


def test_serve_refuses_to_start_naming_every_problem_and_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("SHOAL_"):
            monkeypatch.delenv(name)
    path = tmp_path / "shoal.toml"
    path.write_text("[http]\nport = 6970\n[tracker]\nmin_interval = 4000\n")
    monkeypatch.setenv("SHOAL_UDP_PORT", "x")
    code, _, err = run_main(["serve", "--config", str(path), "--set", "log.level=LOUD"],
                            capsys)
    assert code == 2
    assert sorted(err.splitlines()) == sorted([
        "shoal: SHOAL_UDP_PORT: udp.port: expected int, got 'x'",
        "shoal: log.level: unknown level 'LOUD'",
        f"shoal: {path}: tracker.min_interval: 4000 is above tracker.interval (1800)",
        "shoal: admin.port: admin listener 127.0.0.1:6970 clashes with http listener "
        "0.0.0.0:6970 (both TCP)",
    ])


# shoal stats finds the admin listener the way serve does


def test_admin_url_of_the_settings() -> None:
    assert cli.admin_url(Settings()) == "http://127.0.0.1:6970"
    wild4 = apply_assignments(Settings(), ["admin.host=0.0.0.0", "admin.port=7000"])
    assert cli.admin_url(wild4) == "http://127.0.0.1:7000"
    wild6 = apply_assignments(Settings(), ["admin.host=::", "admin.port=7000"])
    assert cli.admin_url(wild6) == "http://[::1]:7000"
    other = apply_assignments(Settings(), ["admin.host=2001:db8::5", "admin.port=7000"])
    assert cli.admin_url(other) == "http://[2001:db8::5]:7000"


@pytest.mark.parametrize("assignment", ["admin.enabled=false", "admin.port=0"])
def test_stats_says_when_the_settings_name_no_reachable_admin_listener(
    assignment: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("SHOAL_"):
            monkeypatch.delenv(name)
    code, _, err = run_main(["stats", "--set", assignment], capsys)
    assert code == 2
    assert "--url" in err


@pytest.fixture
def admin_tracker() -> Iterator[RunningTracker]:
    settings = apply_assignments(Settings(), [
        'http.hosts=["127.0.0.1"]', "http.port=0", "udp.enabled=false", "admin.port=0"])
    with RunningTracker(settings) as running:
        yield running


def admin_port(running: RunningTracker) -> int:
    listener = running.tracker.admin_listener
    assert listener is not None
    return listener.port


def test_stats_finds_the_admin_listener_from_the_config_file(
    admin_tracker: RunningTracker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("SHOAL_"):
            monkeypatch.delenv(name)
    path = tmp_path / "shoal.toml"
    path.write_text(f'[admin]\nhost = "0.0.0.0"\nport = {admin_port(admin_tracker)}\n')
    code, out, _ = run_main(["stats", "--config", str(path)], capsys)
    assert code == 0
    assert f"at http://127.0.0.1:{admin_port(admin_tracker)}: up" in out
    monkeypatch.setenv("SHOAL_CONFIG", str(path))
    assert run_main(["stats", "--json"], capsys)[0] == 0


def test_stats_finds_the_admin_listener_from_the_environment(
    admin_tracker: RunningTracker, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("SHOAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SHOAL_ADMIN_PORT", str(admin_port(admin_tracker)))
    code, out, _ = run_main(["stats"], capsys)
    assert code == 0
    assert f"at http://127.0.0.1:{admin_port(admin_tracker)}: up" in out


def test_stats_url_overrides_the_settings(
    admin_tracker: RunningTracker, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound, not listening: connections are refused
        monkeypatch.setenv("SHOAL_ADMIN_PORT", str(closed))
        assert run_main(["stats", "--timeout", "2"], capsys)[0] == 1
        url = f"http://127.0.0.1:{admin_port(admin_tracker)}"
        assert run_main(["stats", "--url", url], capsys)[0] == 0


# Log lines

WHEN = 1796251200.25  # 2026-12-02T22:40:00.250Z
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}"


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the local time zone (a POSIX TZ string) for the test."""

    def use(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def record(message: str = "hello", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("shoal.access", logging.INFO, __file__, 1, message, None, None)
    rec.created = WHEN
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize(("tz", "stamp"), [("UTC0", "2026-12-02T22:40:00.250+0000"),
                                           ("XST-05:30", "2026-12-03T04:10:00.250+0530"),
                                           ("YST8", "2026-12-02T14:40:00.250-0800")])
def test_text_log_lines_carry_milliseconds_and_the_utc_offset(
    zone: Callable[[str], None], tz: str, stamp: str
) -> None:
    zone(tz)
    assert cli.TextFormatter().format(record()) == f"{stamp} INFO shoal.access: hello"


def test_json_log_lines_carry_milliseconds_and_the_utc_offset(
    zone: Callable[[str], None],
) -> None:
    zone("XST-05:30")
    entry = json.loads(cli.JsonFormatter().format(record()))
    assert entry == {"time": "2026-12-03T04:10:00.250+0530", "level": "INFO",
                     "logger": "shoal.access", "message": "hello"}


def test_json_access_lines_carry_client_status_latency_and_request_fields() -> None:
    rec = record('127.0.0.1 "GET /announce" 200 1.5 ms', client="127.0.0.1", status=200,
                 latency_ms=1.5, request="GET /announce?info_hash=%22%5C")
    entry = json.loads(cli.JsonFormatter().format(rec))
    assert entry["message"] == '127.0.0.1 "GET /announce" 200 1.5 ms'
    assert (entry["client"], entry["status"], entry["latency_ms"], entry["request"]) == (
        "127.0.0.1", 200, 1.5, "GET /announce?info_hash=%22%5C")


def test_json_lines_stay_json_whatever_the_message_extras_and_exception_hold() -> None:
    try:
        raise ValueError('a "quoted"\nmultiline \x00 reason \\ with \u00e9')
    except ValueError:
        info = sys.exc_info()
    rec = logging.LogRecord("shoal", logging.ERROR, __file__, 1, 'bad "%s"\n\t%s',
                            ("x\x01", b"\xff"), info)
    rec.request = b"GET /\xff"  # not JSON: written as its text
    line = cli.JsonFormatter().format(rec)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "bad \"x\x01\"\n\tb'\\xff'"
    assert entry["request"] == "b'GET /\\xff'"
    assert entry["exception"].startswith("Traceback")
    assert 'ValueError: a "quoted"\nmultiline \x00 reason \\ with \u00e9' in entry["exception"]


def test_setup_logging_writes_the_chosen_format_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        cli.setup_logging("info", "text")
        logging.getLogger("shoal.test").info("plain %d", 1)
        logging.getLogger("shoal.test").debug("not shown")
        cli.setup_logging("debug", "json")
        logging.getLogger("shoal.test").debug("as json", extra={"status": 404})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    text, json_line = capsys.readouterr().err.splitlines()
    assert re.fullmatch(STAMP + r" INFO shoal\.test: plain 1", text)
    entry = json.loads(json_line)
    assert re.fullmatch(STAMP, entry["time"])
    assert (entry["level"], entry["message"], entry["status"]) == ("DEBUG", "as json", 404)


# shoal serve, as a process


def clean_env(**extra: str) -> dict[str, str]:
    # SHOAL_ENGINE stays: the suite runs whole on the engine it names
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHOAL_") or k == "SHOAL_ENGINE"}
    env["SHOAL_STORAGE_PERSIST"] = "false"  # nothing written to the working directory
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


@pytest.mark.parametrize("engine", ["python", "native"])
def test_serve_logs_the_swarm_engine_it_runs_on(processes: list[Process], engine: str) -> None:
    require_engine(engine)
    p = Process(*SERVE, "--set", f"tracker.engine={engine}",
                env=clean_env(SHOAL_ENGINE=""))
    processes.append(p)
    p.wait_for(r"serving http://")
    assert f"swarm engine {engine})" in p.log[-1]


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


def test_serve_refuses_the_native_engine_without_the_extension(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shoal.server.app as app

    monkeypatch.setattr(app, "NATIVE_AVAILABLE", False)  # as on a machine that could not build it
    monkeypatch.setenv("SHOAL_ENGINE", "native")
    code, _, err = run_main(["serve", "--host", "127.0.0.1", "--http-port", "0",
                             "--udp-port", "0", "--set", "admin.enabled=false",
                             "--set", "storage.persist=false"], capsys)
    assert code == 2
    assert "tracker.engine = native" in err and "shoal._native_udp is not built" in err
