"""The ``aduan`` command line, run as a user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from tests.support import BackingServices, ServiceProcess, bearer


def aduan(*args: str, env: dict[str, str],
          timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


async def test_token_create_and_revoke(services: BackingServices) -> None:
    env = services.env()
    created = aduan("token", "create", "--role", "liaison", "--name", "narahubung-pln",
                    "--agency", "pln-uiw-babel", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("adu_")
    refused = aduan("token", "create", "--role", "partner", "--name", "x", "--agency", "pln",
                    env=env)
    assert refused.returncode == 2
    assert "--agency" in refused.stderr
    missing = aduan("token", "create", "--role", "liaison", "--name", "y", env=env)
    assert missing.returncode == 2

    server = ServiceProcess("case", env, services.workdir / "case.log").start()
    try:
        await server.wait_ready()
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/v1/cases", headers=bearer(token))).status_code == 200
            revoked = aduan("token", "revoke", "narahubung-pln", env=env)
            assert revoked.returncode == 0, revoked.stderr
            assert (await client.get("/v1/cases", headers=bearer(token))).status_code == 401
        again = aduan("token", "revoke", "narahubung-pln", env=env)
        assert again.returncode == 1
    finally:
        server.stop()


async def test_infra_up_and_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADUAN_")}
    env["ADUAN_DATA_DIR"] = str(tmp_path / ".aduan")
    env["ADUAN_DATABASE_PORT"] = "0"
    up = await asyncio.to_thread(aduan, "infra", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(line.removeprefix("export ").split("=", 1)
                       for line in up.stdout.splitlines() if line.startswith("export "))
        database_url = exports["ADUAN_DATABASE_URL"].strip("'")
        bootstrap = exports["ADUAN_KAFKA_BOOTSTRAP_SERVERS"].strip("'")
        connection = await asyncpg.connect(
            database_url.replace("postgresql+asyncpg://", "postgresql://"))
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            assert (await admin.describe_cluster())["brokers"]
        finally:
            await admin.close()
    finally:
        down = await asyncio.to_thread(aduan, "infra", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "Kafka stopped" in down.stdout
    assert not (tmp_path / ".aduan" / "infra" / "pg" / "postmaster.pid").exists()
