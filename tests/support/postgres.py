"""A throwaway PostgreSQL server for tests: its own cluster in a temporary directory, on a
free loopback port, started with Debian's ``postgresql`` programs (initdb, pg_ctl) and
stopped after the tests. As root, the cluster runs as the ``postgres`` user (PostgreSQL
refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from support.ports import free_port

PACKAGE = "postgresql"


def cannot_run(message: str) -> NoReturn:
    """Fail on CI (where every test must run), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- CI must run the PostgreSQL tests", pytrace=False)
    pytest.skip(message)


def find_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields the SQLAlchemy URL of its ``postgres`` database."""
    initdb, pg_ctl = find_program("initdb"), find_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        cannot_run(f"PostgreSQL is not installed: install Debian's {PACKAGE} "
                   "(scripts/install-test-deps.sh)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        cannot_run("psycopg is not installed: pip install -e '.[dev]'")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            cannot_run("running as root and there is no postgres user to run PostgreSQL as")
        prefix = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="shoal-pg-"))
    data = base / "data"
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    port = free_port()
    log = base / "server.log"
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "shoal", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True,
                       timeout=120)
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
                              "-c fsync=off -c full_page_writes=off",
                        "start"], check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r} {text}") from exc
    try:
        yield f"postgresql+psycopg://shoal@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server; returns its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name
