"""The production install pieces: what ``pip install .`` brings, the systemd unit and the
example configuration in contrib/ (the nginx example is run for real in
tests/e2e/test_reverse_proxy.py)."""

from __future__ import annotations

import email.parser
import importlib.util
import ipaddress
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import setuptools

from shoal.config import load_file

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"
# SQLAlchemy: private mode's database; redis: the Redis store; websockets: the WebTorrent
# tracker (all features of a plain install). psycopg and schemathesis: the PostgreSQL and
# API-schema tests; pytest-xdist: `make test` spreads each pass over workers.
RUNTIME = {"uvloop", "httptools", "prometheus-client", "sqlalchemy", "redis",
           "websockets"}
DEV_TOOLS = {"pytest", "pytest-timeout", "pytest-xdist", "hypothesis", "ruff", "mypy",
             "import-linter", "psycopg", "schemathesis"}


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a systemd unit, every value of each key in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def can_build_wheels_offline() -> bool:
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.mark.timeout(300)
def test_a_plain_install_brings_only_runtime_dependencies(tmp_path: Path) -> None:
    """The wheel ``pip install .`` builds requires the runtime libraries only; the
    development tools come with the ``dev`` extra."""
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    shutil.copytree(ROOT / "shoal", src / "shoal",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
               str(tmp_path / "dist"), str(src)]
    if can_build_wheels_offline():
        command.insert(5, "--no-build-isolation")
    built = subprocess.run(command, capture_output=True, text=True, timeout=280)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("shoal-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    plain, extras = set(), {}
    for requirement in metadata.get_all("Requires-Dist") or []:
        project = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert project is not None
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if extra:
            extras.setdefault(extra.group(1), set()).add(project.group(0).lower())
        else:
            plain.add(project.group(0).lower())
    assert plain == RUNTIME
    assert extras["dev"] == DEV_TOOLS


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): the unit "
                    "contrib/shoal.service was not verified")
    # verify insists that ExecStart's program exists: point it at this checkout's shoal.
    shoal = Path(sys.executable).parent / "shoal"
    text = (CONTRIB / "shoal.service").read_text()
    assert "/opt/shoal/venv/bin/shoal" in text
    unit = tmp_path / "shoal.service"
    unit.write_text(text.replace("/opt/shoal/venv/bin/shoal",
                                 str(shoal) if shoal.exists() else "/bin/true"))
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    complaints = [line for line in (checked.stdout + checked.stderr).splitlines()
                  if "shoal.service" in line]
    assert checked.returncode == 0 and complaints == [], checked.stdout + checked.stderr


def test_the_unit_runs_the_example_config_as_a_confined_user_with_reload_on_sighup() -> None:
    unit = unit_settings((CONTRIB / "shoal.service").read_text())
    assert unit["ExecStart"] == ["/opt/shoal/venv/bin/shoal serve --config /etc/shoal/shoal.toml"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["User"] == ["shoal"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert int(unit["LimitNOFILE"][0]) >= 65536
    settings = load_file(CONTRIB / "shoal.toml")
    # The state directory systemd creates is the one storage writes to, and is writable.
    assert settings.storage.persist
    assert settings.storage.data_dir == "/var/lib/" + unit["StateDirectory"][0]
    assert settings.storage.data_dir in unit["ReadWritePaths"][0].split()


def test_the_example_config_trusts_the_proxy_the_nginx_example_runs_as() -> None:
    settings = load_file(CONTRIB / "shoal.toml")
    nginx = (CONTRIB / "nginx.conf").read_text()
    upstream = re.search(r"^\s*server\s+([\d.]+):(\d+)\s*;", nginx, re.MULTILINE)
    assert upstream is not None
    host, port = upstream.group(1), int(upstream.group(2))
    assert settings.http.hosts == [host] and settings.http.port == port
    assert any(ipaddress.ip_address(host) in ipaddress.ip_network(net)
               for net in settings.http.trusted_proxies)
    assert settings.http.real_ip_header == "X-Forwarded-For"
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
