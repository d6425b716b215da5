"""Settings: TOML file, then SHOAL_* environment, then flags; unknown keys and bad values
are errors that name the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from shoal.config import (
    SECTIONS,
    ConfigError,
    Settings,
    apply_assignments,
    apply_env,
    load_file,
    render_toml,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shoal.toml"
    path.write_text(text)
    return path


def test_printed_config_is_toml_equal_to_the_defaults() -> None:
    assert tomllib.loads(render_toml()) == dataclasses.asdict(Settings())


def test_printed_config_explains_every_key() -> None:
    lines = render_toml().splitlines()
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in lines
        for f in dataclasses.fields(cls):
            doc = f.metadata.get("doc")
            assert doc, f"{section}.{f.name} has no explanation"
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{f.name} = "))
            assert lines[index - 1].startswith("# ")


def test_printed_config_loads_back_to_the_defaults(tmp_path: Path) -> None:
    assert load_file(write(tmp_path, render_toml())) == Settings()


def test_printed_config_of_changed_settings_round_trips(tmp_path: Path) -> None:
    changed = apply_assignments(Settings(), ['http.hosts=["127.0.0.1"]', "http.port=1234",
                                             "log.format=json", "http.request_timeout=2.5"])
    assert load_file(write(tmp_path, render_toml(changed))) == changed


def test_a_file_sets_values(tmp_path: Path) -> None:
    path = write(tmp_path, """
[tracker]
interval = 900
full_scrape = true

[http]
hosts = ["127.0.0.1"]
port = 8080
request_timeout = 2
parser = "python"
""")
    settings = load_file(path)
    assert settings.tracker.interval == 900
    assert settings.tracker.full_scrape is True
    assert settings.http.hosts == ["127.0.0.1"]
    assert settings.http.port == 8080
    assert settings.http.request_timeout == 2.0
    assert isinstance(settings.http.request_timeout, float)
    assert settings.http.parser == "python"
    assert settings.udp == Settings().udp


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_file(write(tmp_path, "")) == Settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tracker]\nintervall = 5\n", "unknown key tracker.intervall"),
        ("[htttp]\nport = 5\n", r"unknown section \[htttp\]"),
        ("port = 5\n", r"unknown section \[port\]"),
        ("http = 5\n", r"\[http\] must be a table"),
        ('[http]\nport = "80"\n', "http.port: expected int"),
        ("[http]\nport = 80.0\n", "http.port: expected int"),
        ("[http]\nport = true\n", "http.port: expected int"),
        ("[tracker]\nfull_scrape = 1\n", "tracker.full_scrape: expected bool"),
        ('[http]\nhosts = "127.0.0.1"\n', "http.hosts: expected a list of str"),
        ("[http]\nhosts = [1]\n", "http.hosts: expected a list of str"),
        ("[http]\nport = 65536\n", "http.port: must be 0..65535"),
        ("[udp]\nport = -1\n", "udp.port: must be 0..65535"),
        ("[tracker]\ninterval = 0\n", "tracker.interval: must be positive"),
        ("[tracker]\nmax_numwant = -1\n", "tracker.max_numwant: must not be negative"),
        ("[http]\nrequest_timeout = 0\n", "http.request_timeout: must be a positive"),
        ("[http]\nkeepalive_timeout = nan\n", "http.keepalive_timeout: must be a positive"),
        ("[http]\nrequest_timeout = inf\n", "http.request_timeout: must be a positive"),
        ('[http]\nhosts = ["localhost"]\n', "http.hosts: not an IP address"),
        ('[http]\ntrusted_proxies = ["10.0.0.0/33"]\n', "http.trusted_proxies: not a network"),
        ('[http]\nparser = "fast"\n', "http.parser: must be auto or python"),
        ('[udp]\nsecret = "xyz"\n', "udp.secret: must be hexadecimal"),
        ("[udp]\nconnection_id_ttl = 70000\n", "udp.connection_id_ttl: at most 65000"),
        ('[admin]\nhost = "localhost"\n', "admin.host: not an IP address"),
        ('[log]\nlevel = "LOUD"\n', "log.level: unknown level"),
        ('[log]\nformat = "xml"\n', "log.format: must be text or json"),
    ],
)
def test_a_bad_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_file(write(tmp_path, text))


def test_a_file_that_is_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_file(write(tmp_path, "[http\nport = 1\n"))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "absent.toml")


# Environment


def test_env_sets_values_of_every_type() -> None:
    settings = apply_env(Settings(), {
        "SHOAL_HTTP_PORT": "8080",
        "SHOAL_HTTP_REQUEST_TIMEOUT": "2.5",
        "SHOAL_TRACKER_FULL_SCRAPE": "yes",
        "SHOAL_HTTP_HOSTS": "127.0.0.1, ::1",
        "SHOAL_HTTP_TRUSTED_PROXIES": '["10.0.0.0/8"]',
        "SHOAL_LOG_LEVEL": "DEBUG",
        "SHOAL_TRACKER_MAX_SCRAPE_HASHES": "10",
        "PATH": "/bin",
        "HOME": "/root",
    })
    assert settings.http.port == 8080
    assert settings.http.request_timeout == 2.5
    assert settings.tracker.full_scrape is True
    assert settings.http.hosts == ["127.0.0.1", "::1"]
    assert settings.http.trusted_proxies == ["10.0.0.0/8"]
    assert settings.log.level == "DEBUG"
    assert settings.tracker.max_scrape_hashes == 10


@pytest.mark.parametrize(("text", "value"), [("1", True), ("true", True), ("On", True),
                                              ("0", False), ("false", False), ("no", False)])
def test_env_booleans(text: str, value: bool) -> None:
    assert apply_env(Settings(), {"SHOAL_TRACKER_FULL_SCRAPE": text}).tracker.full_scrape is value


def test_env_without_shoal_variables_changes_nothing() -> None:
    settings = Settings()
    assert apply_env(settings, {"PATH": "/bin"}) is settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHOAL_HTTP_PORTT": "1"}, "unknown key http.portt"),
        ({"SHOAL_WEB_PORT": "1"}, "SHOAL_WEB_PORT: no such setting"),
        ({"SHOAL_HTTP": "1"}, "SHOAL_HTTP: no such setting"),
        ({"SHOAL_HTTP_PORT": "eighty"}, "http.port: expected int"),
        ({"SHOAL_HTTP_PORT": "99999"}, "http.port: must be 0..65535"),
        ({"SHOAL_TRACKER_FULL_SCRAPE": "maybe"}, "tracker.full_scrape: expected true or false"),
        ({"SHOAL_HTTP_HOSTS": "[broken"}, "http.hosts: not a list"),
        ({"SHOAL_HTTP_REQUEST_TIMEOUT": "nan"}, "http.request_timeout"),
    ],
)
def test_bad_env_names_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_env(Settings(), env)


# --set assignments


def test_assignments_set_values() -> None:
    settings = apply_assignments(
        Settings(), ["http.port=9000", "udp.enabled=false", "tracker.interval = 600"]
    )
    assert settings.http.port == 9000
    assert settings.udp.enabled is False
    assert settings.tracker.interval == 600


def test_a_later_assignment_wins() -> None:
    assert apply_assignments(Settings(), ["http.port=1", "http.port=2"]).http.port == 2


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("http.port", "expected section.key=value"),
        ("port=1", "expected section.key=value"),
        ("http.nope=1", "unknown key http.nope"),
        ("nope.port=1", r"unknown section \[nope\]"),
        ("http.port=x", "http.port: expected int"),
    ],
)
def test_bad_assignments_name_the_setting(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_assignments(Settings(), [item])


def test_layers_apply_in_order_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 1000\nmax_headers = 10\nmax_connections = 5\n")
    settings = load_file(path)
    settings = apply_env(settings, {"SHOAL_HTTP_PORT": "2000", "SHOAL_HTTP_MAX_HEADERS": "20"})
    settings = apply_assignments(settings, ["http.port=3000"])
    assert settings.http.port == 3000  # flag over env over file
    assert settings.http.max_headers == 20  # env over file
    assert settings.http.max_connections == 5  # file over defaults
