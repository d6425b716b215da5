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
    live_changes,
    load_file,
    read_network_list,
    read_torrent_list,
    render_toml,
    resolve,
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
        ('[tracker]\nengine = "fast"\n', "tracker.engine: must be auto, native or python"),
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


# New sections and limits


def test_defaults_of_access_storage_and_limits() -> None:
    s = Settings()
    assert (s.access.torrents, s.access.torrent_list, s.access.ban_list) == ("open", "", "")
    assert (s.access.client_allow, s.access.client_deny, s.access.banned_networks) == ([], [], [])
    assert (s.storage.persist, s.storage.data_dir) == (True, "shoal-data")
    assert (s.storage.snapshot_interval, s.storage.flush_interval) == (60, 2.0)
    assert (s.tracker.max_torrents, s.tracker.max_peers_per_swarm,
            s.tracker.max_peers_per_ip) == (5_000_000, 200_000, 100)
    assert (s.http.max_connections_per_ip, s.http.first_byte_timeout) == (256, 5.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[access]\ntorrents = "closed"\n', "access.torrents: must be open, allow or deny"),
        ('[access]\nbanned_networks = ["10.0.0.0/8", "nope"]\n',
         "access.banned_networks: not a network: 'nope'"),
        ('[access]\nclient_deny = [""]\n', "access.client_deny: a peer_id prefix is 1 to 20"),
        ("[storage]\nsnapshot_interval = 0\n", "storage.snapshot_interval: must be positive"),
        ("[storage]\nflush_interval = -1\n", "storage.flush_interval: must be a positive"),
        ('[storage]\ndata_dir = ""\n', "storage.data_dir: must not be empty"),
        ("[tracker]\nmax_torrents = 0\n", "tracker.max_torrents: must be positive"),
        ("[tracker]\nmax_peers_per_swarm = 0\n", "tracker.max_peers_per_swarm: must be positive"),
        ("[tracker]\nmax_peers_per_ip = -5\n", "tracker.max_peers_per_ip: must be positive"),
        ("[http]\nmax_connections_per_ip = 0\n", "http.max_connections_per_ip: must be positive"),
        ("[http]\nfirst_byte_timeout = 0\n", "http.first_byte_timeout: must be a positive"),
        ('[tracker]\nmode = "secret"\n', "tracker.mode: must be public or private"),
        ('[tracker]\nmode = "private"\nfull_scrape = true\n',
         "tracker.full_scrape: not available in private mode"),
        ("[accounting]\npeer_limit = 0\n", "accounting.peer_limit: must be at least 1"),
        ("[accounting]\nmax_rate = -1\n", "accounting.max_rate: must be 0 or more"),
        ("[accounting]\nflush_interval = 0\n", "accounting.flush_interval: must be a positive"),
    ],
)
def test_new_settings_are_range_checked(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_file(write(tmp_path, text))


def test_banned_networks_take_ipv4_ipv6_and_bare_addresses(tmp_path: Path) -> None:
    nets = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "10.1.2.3/8"]
    settings = load_file(write(tmp_path, f"[access]\nbanned_networks = {nets!r}\n".replace(
        "'", '"')))
    assert settings.access.banned_networks == nets


# Every problem at once


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    text = '[http]\nport = "x"\nprot = 1\n[udp]\nport = 70000\n[log]\nlevel = "LOUD"\n'
    with pytest.raises(ConfigError) as info:
        load_file(write(tmp_path, text))
    messages = info.value.messages
    assert len(messages) == 4
    assert str(info.value) == "\n".join(messages)
    for part in ("http.port: expected int", "unknown key http.prot", "udp.port: must be",
                 "log.level: unknown level"):
        assert sum(part in m for m in messages) == 1, (part, messages)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("tracker.intreval", "tracker.interval"), ("http.trusted_proxy", "http.trusted_proxies"),
     ("storage.datadir", "storage.data_dir")],
)
def test_a_misspelt_key_gets_the_nearest_one_suggested(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown key {key}; did you mean {suggestion}\\?"):
        apply_assignments(Settings(), [f"{key}=1"])


def test_a_misspelt_section_gets_the_nearest_one_suggested() -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[acess\]; did you mean \[access\]"):
        apply_assignments(Settings(), ["acess.torrents=open"])


def test_a_bad_value_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        apply_env(Settings(), {"SHOAL_HTTP_PORT": "x", "SHOAL_UDP_PORT": "99999"})
    assert sorted(info.value.messages) == [
        "SHOAL_HTTP_PORT: http.port: expected int, got 'x'",
        "SHOAL_UDP_PORT: udp.port: must be 0..65535, got 99999",
    ]


def test_a_misspelt_variable_gets_the_nearest_one_suggested() -> None:
    with pytest.raises(ConfigError, match="SHOAL_TRACKR_INTERVAL: no such setting; did you "
                                          "mean SHOAL_TRACKER_INTERVAL"):
        apply_env(Settings(), {"SHOAL_TRACKR_INTERVAL": "60"})


def test_resolve_reports_the_problems_of_every_layer_naming_their_source(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "[http]\nport = 70000\n[tracker]\nintreval = 5\n")
    with pytest.raises(ConfigError) as info:
        resolve(path, {"SHOAL_UDP_PORT": "x", "PATH": "/bin"}, ["log.level=LOUD"])
    assert sorted(info.value.messages) == sorted([
        f"{path}: unknown key tracker.intreval; did you mean tracker.interval?",
        f"{path}: http.port: must be 0..65535, got 70000",
        "SHOAL_UDP_PORT: udp.port: expected int, got 'x'",
        "log.level: unknown level 'LOUD'",
    ])


def test_resolve_layers_file_then_env_then_assignments(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 1000\nmax_headers = 10\nmax_connections = 5\n")
    settings = resolve(path, {"SHOAL_HTTP_PORT": "2000", "SHOAL_HTTP_MAX_HEADERS": "20"},
                       ["http.port=3000"])
    assert (settings.http.port, settings.http.max_headers, settings.http.max_connections) == (
        3000, 20, 5)


def test_resolve_takes_shoal_config_as_the_file_name_not_a_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 1234\n")
    assert resolve(path, {"SHOAL_CONFIG": str(path)}).http.port == 1234


def test_a_later_layer_can_fix_what_an_earlier_one_left_incomplete(tmp_path: Path) -> None:
    hashes = tmp_path / "hashes.txt"
    hashes.write_text("")
    path = write(tmp_path, '[access]\ntorrents = "allow"\n')
    settings = resolve(path, {"SHOAL_ACCESS_TORRENT_LIST": str(hashes)})
    assert (settings.access.torrents, settings.access.torrent_list) == ("allow", str(hashes))


# Settings that are fine alone but not together


def valid(assignments: list[str]) -> list[str]:
    """The problems of the defaults with ``assignments`` applied."""
    try:
        apply_assignments(Settings(), assignments)
    except ConfigError as exc:
        return exc.messages
    return []


def test_min_interval_above_interval_is_an_error() -> None:
    assert valid(["tracker.interval=600", "tracker.min_interval=600"]) == []
    assert valid(["tracker.interval=600", "tracker.min_interval=601"]) == [
        "tracker.min_interval: 601 is above tracker.interval (600)"]


def test_neither_http_nor_udp_enabled_is_an_error() -> None:
    assert valid(["http.enabled=false"]) == []
    (message,) = valid(["http.enabled=false", "udp.enabled=false"])
    assert "neither http nor udp is enabled" in message


@pytest.mark.parametrize(
    ("assignments", "clash"),
    [
        (["admin.port=6969"], "admin listener 127.0.0.1:6969 clashes with http listener "
                              "0.0.0.0:6969 (both TCP)"),
        (['http.hosts=["::1"]', "admin.host=::", "admin.port=6969"],
         "admin listener [::]:6969 clashes with http listener [::1]:6969"),
        (['http.hosts=["127.0.0.1", "127.0.0.1"]'], "http listener 127.0.0.1:6969 clashes"),
        (['udp.hosts=["0.0.0.0", "127.0.0.5"]'], "(both UDP)"),
    ],
)
def test_listeners_on_one_port_and_protocol_with_overlapping_hosts_clash(
    assignments: list[str], clash: str
) -> None:
    (message,) = valid(assignments)
    assert clash in message


@pytest.mark.parametrize(
    "assignments",
    [
        [],  # http and udp share 6969 on 0.0.0.0 and ::, different protocols and families
        ['http.hosts=["127.0.0.1"]', "admin.host=127.0.0.2", "admin.port=6969"],
        ['http.hosts=["::"]', "admin.host=127.0.0.1", "admin.port=6969"],
        ["admin.port=6969", "admin.enabled=false"],
        ["admin.port=6969", "http.enabled=false"],
        ["http.port=0", "admin.port=0"],
    ],
)
def test_listeners_that_do_not_overlap_are_fine(assignments: list[str]) -> None:
    assert valid(assignments) == []


@pytest.mark.parametrize("mode", ["allow", "deny"])
def test_a_torrent_mode_other_than_open_needs_a_list(mode: str) -> None:
    (message,) = valid([f"access.torrents={mode}"])
    assert message == f"access.torrents: {mode!r} needs access.torrent_list (a file)"


def test_list_files_that_do_not_exist_are_errors(tmp_path: Path) -> None:
    messages = valid([f"access.torrent_list={tmp_path}/none.txt",
                      f"access.ban_list={tmp_path}/nobans.txt"])
    assert messages == [f"access.torrent_list: cannot read {tmp_path}/none.txt: No such file "
                        "or directory",
                        f"access.ban_list: cannot read {tmp_path}/nobans.txt: No such file or "
                        "directory"]


def test_a_malformed_line_in_a_list_file_is_named_by_file_and_line(tmp_path: Path) -> None:
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"# allowed\n{'ab' * 20}\n\nnot-a-hash\n")
    bans = tmp_path / "bans.txt"
    bans.write_text("10.0.0.0/8\n300.1.1.1\n")
    messages = valid(["access.torrents=allow", f"access.torrent_list={hashes}",
                      f"access.ban_list={bans}"])
    assert messages == [
        f"access.torrent_list: {hashes}:4: not an info_hash (40 hex digits): 'not-a-hash'",
        f"access.ban_list: {bans}:2: not a network (CIDR): '300.1.1.1'",
    ]


# The list file parsers


def test_torrent_list_reads_hashes_skipping_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "hashes.txt"
    a, b = "0123456789abcdef0123456789abcdef01234567", "FF" * 20
    path.write_text(f"# a comment\n\n  {a}  # trailing comment\n{b}\n{a}\n")
    assert read_torrent_list(path) == frozenset({bytes.fromhex(a), b"\xff" * 20})


def test_an_empty_torrent_list_is_an_empty_set(tmp_path: Path) -> None:
    path = tmp_path / "hashes.txt"
    path.write_text("# nothing allowed yet\n")
    assert read_torrent_list(path) == frozenset()


@pytest.mark.parametrize("line", ["ab" * 19, "ab" * 21, "zz" * 20, "ab" * 10 + " " + "ab" * 10])
def test_torrent_list_refuses_what_is_not_40_hex_digits(tmp_path: Path, line: str) -> None:
    path = tmp_path / "hashes.txt"
    path.write_text(f"{'cd' * 20}\n{line}\n")
    with pytest.raises(ConfigError) as info:
        read_torrent_list(path)
    assert info.value.messages == [f"{path}:2: not an info_hash (40 hex digits): {line!r}"]


def test_network_list_reads_ipv4_ipv6_and_bare_addresses_canonically(tmp_path: Path) -> None:
    path = tmp_path / "bans.txt"
    path.write_text("10.1.2.3/8  # host bits are cleared\n2001:db8::1/32\n192.0.2.7\n")
    assert read_network_list(path) == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]


def test_network_list_reports_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bans.txt"
    path.write_text("nope\n10.0.0.0/8\n1.2.3.4/40\n")
    with pytest.raises(ConfigError) as info:
        read_network_list(path)
    assert info.value.messages == [f"{path}:1: not a network (CIDR): 'nope'",
                                   f"{path}:3: not a network (CIDR): '1.2.3.4/40'"]


def test_a_list_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_network_list(tmp_path / "absent.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_torrent_list(tmp_path / "binary.txt")


# Which changes apply live


LIVE = [
    "access.client_allow=-TR", "access.client_deny=-XL",
    "access.banned_networks=10.0.0.0/8", "tracker.interval=900", "tracker.min_interval=60",
    "tracker.interval_jitter=5", "tracker.peer_timeout=100", "tracker.default_numwant=10",
    "tracker.max_numwant=20", "tracker.max_scrape_hashes=5", "tracker.full_scrape=true",
    "tracker.full_scrape_cache=3", "tracker.max_torrents=10", "tracker.max_peers_per_swarm=10",
    "tracker.max_peers_per_ip=2", "tracker.sweep_interval=5", "tracker.sweep_budget=5",
    "tracker.allow_ip_param=true", "tracker.peer_totals=true", "log.level=DEBUG",
    "log.format=json", "http.access_log=true",
]
RESTART = [
    "http.port=1", "http.hosts=127.0.0.1", "http.max_connections=5", "http.trusted_proxies=::1",
    "http.max_connections_per_ip=1", "http.first_byte_timeout=1", "udp.port=2", "udp.secret=ab",
    "admin.port=3", "admin.enabled=false", "storage.persist=false", "storage.data_dir=x",
    "storage.snapshot_interval=5", "storage.flush_interval=1",
]


def test_live_changes_of_equal_settings_are_empty() -> None:
    assert live_changes(Settings(), Settings()) == ([], [])


@pytest.mark.parametrize("assignment", LIVE)
def test_a_rule_or_tracker_policy_change_applies_live(assignment: str) -> None:
    new = apply_assignments(Settings(), [assignment])
    assert live_changes(Settings(), new) == ([assignment.partition("=")[0]], [])


@pytest.mark.parametrize("assignment", RESTART)
def test_a_listener_or_storage_change_needs_a_restart(assignment: str) -> None:
    new = apply_assignments(Settings(), [assignment])
    assert live_changes(Settings(), new) == ([], [assignment.partition("=")[0]])


def test_every_access_key_applies_live(tmp_path: Path) -> None:
    hashes, bans = tmp_path / "h.txt", tmp_path / "b.txt"
    hashes.write_text("")
    bans.write_text("")
    new = apply_assignments(Settings(), [
        "access.torrents=allow", f"access.torrent_list={hashes}", "access.client_allow=-TR",
        "access.client_deny=-XL", "access.banned_networks=10.0.0.0/8", f"access.ban_list={bans}",
        "udp.port=1",
    ])
    live, restart = live_changes(Settings(), new)
    assert live == [f"access.{f.name}" for f in dataclasses.fields(new.access)]
    assert restart == ["udp.port"]


def test_peers_live_in_memory_unless_redis_is_chosen() -> None:
    s = Settings().storage
    assert (s.peers, s.redis_url, s.redis_namespace, s.redis_timeout) == (
        "memory", "", "shoal", 0.25)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[storage]\npeers = "disk"\n', "storage.peers: must be memory or redis"),
        ('[storage]\npeers = "redis"\n', "storage.redis_url: .* needs a redis:// URL"),
        ('[storage]\npeers = "redis"\nredis_url = "http://h:1"\n',
         "storage.redis_url: not a redis:// or rediss:// URL"),
        ('[storage]\nredis_url = "redis://a:1, redis://b:x"\n', "storage.redis_url: bad port"),
        ('[storage]\nredis_timeout = 0\n', "storage.redis_timeout: must be a positive"),
        ('[storage]\nredis_namespace = "a{b}"\n', "storage.redis_namespace: a non-empty name"),
    ],
)
def test_redis_settings_are_checked(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_file(write(tmp_path, text))


def test_redis_cluster_seed_nodes_are_accepted(tmp_path: Path) -> None:
    text = '[storage]\npeers = "redis"\nredis_url = "redis://10.0.0.1:7000,rediss://h:7001"\n'
    assert load_file(write(tmp_path, text)).storage.peers == "redis"


def test_shoal_engine_overrides_tracker_engine_and_is_checked() -> None:
    from shoal.config import engine_choice

    settings = Settings()
    assert settings.tracker.engine == "auto"
    assert engine_choice(settings, {}) == "auto"
    assert engine_choice(settings, {"SHOAL_ENGINE": "Python"}) == "python"
    with pytest.raises(ConfigError, match="SHOAL_ENGINE"):
        engine_choice(settings, {"SHOAL_ENGINE": "fast"})
    # SHOAL_ENGINE is not read as a setting of a section called "engine"
    assert apply_env(settings, {"SHOAL_ENGINE": "native"}) == settings
    assert apply_env(settings, {"SHOAL_TRACKER_ENGINE": "python"}).tracker.engine == "python"
    with pytest.raises(ConfigError, match=r"tracker\.engine"):
        apply_env(settings, {"SHOAL_TRACKER_ENGINE": "fast"})
