"""What the benchmarks run against: an embedded PostgreSQL and ``aduan serve`` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from services.migrate import migrate_async
from services.postgres import EmbeddedPostgres, start_postgres
from shared.auth import Role, create_token
from shared.db import Database, asyncpg_dsn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Backing:
    pg: EmbeddedPostgres
    workdir: Path
    token: str = ""

    @property
    def url(self) -> str:
        return self.pg.url()

    @property
    def dsn(self) -> str:
        return asyncpg_dsn(self.url)

    async def count(self, sql: str, *args: object) -> int:
        connection = await asyncpg.connect(self.dsn)
        try:
            return int(await connection.fetchval(sql, *args))
        finally:
            await connection.close()

    async def execute(self, sql: str) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADUAN_")}
        # The load comes from one address standing for many clients: no per-token rate limit
        # and no per-address connection bound, so what is measured is admission under load.
        env.update({"ADUAN_DATABASE_URL": self.url, "ADUAN_RATE_LIMIT_PER_MINUTE": "0",
                    "ADUAN_MAX_CONNECTIONS_PER_CLIENT": "0",
                    "ADUAN_LOG_LEVEL": "WARNING", "ADUAN_DATA_DIR": str(self.workdir / "data")})
        env.update(extra)
        # An experiment's setting: BENCH_ADUAN_X=v runs every server with ADUAN_X=v.
        env.update({k[len("BENCH_"):]: v for k, v in os.environ.items()
                    if k.startswith("BENCH_ADUAN_")})
        return env


@asynccontextmanager
async def backing() -> AsyncIterator[Backing]:
    workdir = Path(tempfile.mkdtemp(prefix="aduan-bench-"))
    os.chmod(workdir, 0o755)  # the embedded PostgreSQL runs as its own user when run as root
    pg = start_postgres(workdir / "pg", temporary=True)
    try:
        await migrate_async(pg.url())
        async with Database.opened(pg.url()) as database, database.transaction() as session:
            token = await create_token(session, name=f"bench-{time.time_ns()}", role=Role.admin)
        yield Backing(pg, workdir, token)
    finally:
        pg.stop()


@dataclass
class Server:
    """``aduan serve <which>`` on a free port."""

    which: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", self.which, "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        return self.process

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The main process and its HTTP worker processes (services/workers.py)."""
        pids = [self.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    continue
                if int(stat[1]) == self.pid:
                    pids.append(int(entry.name))
        return pids

    async def __aenter__(self) -> Server:
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"aduan serve {self.which} exited")
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}/readyz")).is_success:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"aduan serve {self.which} not ready")

    async def __aexit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
