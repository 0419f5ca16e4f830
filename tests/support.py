"""Helpers shared by the tests: running apps in-process or as processes, tokens, factories."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from services.allinone import create_app
from shared.auth import Role, create_token
from shared.clock import Clock
from shared.db import Database, asyncpg_dsn
from shared.settings import Settings

T = TypeVar("T")


@dataclass
class BackingServices:
    database_url: str
    kafka: str | None
    workdir: Path
    prefix: str = ""
    _tokens: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "kafka_bootstrap_servers": self.kafka,
            "topic_prefix": self.prefix,
            "group_prefix": self.prefix,
            "consumer_poll_seconds": 0.05,
            "relay_poll_seconds": 0.05,
            "rate_limit_per_minute": 0,
            # Tests share two loaded cores: bursts they fire are not overload. The admission
            # tests (tests/shared/test_admission.py) set these themselves.
            "max_requests_in_flight": 0,
            "database_pool_timeout_seconds": 30,
            # Events written behind the app's back (tests that inject them) are still read soon.
            "wakeup_fallback_seconds": 1.0,
            "data_dir": self.workdir / ".aduan",
        }
        values.update(overrides)
        return Settings(**values)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADUAN_")}
        env.update({
            "ADUAN_DATABASE_URL": self.database_url,
            "ADUAN_TOPIC_PREFIX": self.prefix,
            "ADUAN_GROUP_PREFIX": self.prefix,
            "ADUAN_CONSUMER_POLL_SECONDS": "0.05",
            "ADUAN_RELAY_POLL_SECONDS": "0.05",
            "ADUAN_RATE_LIMIT_PER_MINUTE": "0",
            "ADUAN_MAX_REQUESTS_IN_FLIGHT": "0",
            "ADUAN_DATABASE_POOL_TIMEOUT_SECONDS": "30",
            "ADUAN_WAKEUP_FALLBACK_SECONDS": "1",
            "ADUAN_DATA_DIR": str(self.workdir / ".aduan"),
            # An embedded server a process starts takes any free port, never the shared default.
            "ADUAN_DATABASE_PORT": "0",
            "ADUAN_LOG_FORMAT": "console",
        })
        if self.kafka:
            env["ADUAN_KAFKA_BOOTSTRAP_SERVERS"] = self.kafka
        env.update(overrides)
        return env

    async def token(self, role: Role | str, name: str | None = None,
                    agency: str | None = None) -> str:
        role = Role(role)
        name = name or f"{role.value}-{len(self._tokens)}"
        async with Database.opened(self.database_url) as database, \
                database.transaction() as session:
            token = await create_token(session, name=name, role=role, agency_code=agency)
        self._tokens[name] = token
        return token


@contextmanager
def reachable_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder others may enter (mode 711), removed afterwards: run as root, the
    embedded PostgreSQL runs as another user, who must reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_app(backing: BackingServices, which: str = "all", *, clock: Clock | None = None,
                      **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process, its background consumers running, behind an httpx client."""
    app = create_app(which, backing.settings(**overrides), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aduan.test",
                                     timeout=30) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 30.0,
                     interval: float = 0.1) -> T:
    """Polls ``check`` until it returns without AssertionError; re-raises the last one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    """``aduan serve <which>`` as a real process on a free port."""

    which: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", self.which, "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.which} exited:\n{self.log_tail()}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.which} not ready in {timeout}s:\n{self.log_tail()}")

    def stop(self, *, kill: bool = False, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def complaint(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "report",
        "channel": "complaint_post",
        "substance": "electricity",
        "reporter": {"name": "Siti Aminah", "email": "siti@example.id", "phone": "+62811000",
                     "identity_number": "1971000000000001", "address": "Pangkalpinang",
                     "confidential": False},
        "reported_agency": {"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Babel"},
        "summary": "Pemadaman listrik berulang tanpa pemberitahuan",
        "description": "Listrik padam tiga kali seminggu.",
        "incident_date": "2022-03-02",
        "reported_to_agency_first": True,
        "location": {"regency": "Pangkalpinang", "place": "Kantor Kelurahan Bukit Intan"},
    }
    body.update(overrides)
    return body


def database_named(server_url: str, name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the server of ``server_url``."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of one statement, read on a connection of its own as an outside tool would."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def server_command(server_url: str, statement: str) -> None:
    """Runs a statement (CREATE/DROP DATABASE) on the server's maintenance database."""
    admin = await asyncpg.connect(asyncpg_dsn(server_url, database="postgres"))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


def start_services(backing: BackingServices, tmp_path: Path,
                   env: dict[str, str] | None = None) -> dict[str, ServiceProcess]:
    """The three services as three ``aduan serve`` processes (their logs under ``tmp_path``)."""
    env = env or backing.env()
    return {name: ServiceProcess(name, env, tmp_path / f"{name}.log").start()
            for name in ("intake", "case", "metrics")}
