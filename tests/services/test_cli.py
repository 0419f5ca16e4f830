"""The ``aduan`` command line, run as a user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.postgres import server_running
from shared.db import asyncpg_dsn
from tests.intake_api.webhooks.receiver import receiving
from tests.support import (
    BackingServices,
    ServiceProcess,
    bearer,
    complaint,
    eventually,
    running_app,
)


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


def exports_of(stdout: str) -> dict[str, str]:
    return {name: value.strip("'") for name, value in (
        line.removeprefix("export ").split("=", 1)
        for line in stdout.splitlines() if line.startswith("export "))}


async def test_infra_up_and_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADUAN_")}
    env["ADUAN_DATA_DIR"] = str(tmp_path / ".aduan")
    env["ADUAN_DATABASE_PORT"] = "0"
    up = await asyncio.to_thread(aduan, "infra", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        exports = exports_of(up.stdout)
        database_url = exports["ADUAN_DATABASE_URL"]
        bootstrap = exports["ADUAN_KAFKA_BOOTSTRAP_SERVERS"]
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            assert (await admin.describe_cluster())["brokers"]
        finally:
            await admin.close()
        broker_pid = int((tmp_path / ".aduan" / "infra" / "kafka" / "broker.pid").read_text())

        # A second `up` reports what runs and prints the same exports; nothing new is started.
        again = await asyncio.to_thread(aduan, "infra", "up", env=env)
        assert again.returncode == 0, again.stderr
        assert "already running: PostgreSQL, Kafka" in again.stderr
        assert exports_of(again.stdout) == exports
    finally:
        started = time.monotonic()
        down = await asyncio.to_thread(aduan, "infra", "down", env=env)
        took = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines() == ["PostgreSQL stopped", "Kafka stopped"]
    assert not (tmp_path / ".aduan" / "infra" / "pg" / "postmaster.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)
    print(f"\ninfra down stopped PostgreSQL and Kafka in {took:.1f}s")


async def test_failed_infra_up_leaves_nothing_running(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"JAVA_HOME", "PATH"}
           and not k.startswith("ADUAN_")}
    env.update(ADUAN_DATA_DIR=str(tmp_path / ".aduan"), PATH=str(tmp_path / "no-java"))
    up = await asyncio.to_thread(aduan, "infra", "up", env=env)
    assert up.returncode == 1
    assert len(up.stderr.splitlines()) == 1, up.stderr
    assert up.stderr.startswith("aduan: a Java 17+ runtime (java) is required")
    assert not server_running(tmp_path / ".aduan" / "infra" / "pg")
    assert not (tmp_path / ".aduan" / "infra" / "kafka" / "broker.pid").exists()


def test_token_create_refuses_bad_agency_codes_and_names_in_one_line(
        services: BackingServices) -> None:
    env = services.env()
    for args, words in [
        (("--role", "liaison", "--name", "narahubung-pln", "--agency", "PLN-UIW-BABEL"),
         "not an agency code"),
        (("--role", "liaison", "--name", "narahubung-pln", "--agency", "pln/uiw"),
         "not an agency code"),
        (("--role", "partner", "--name", "p" * 5000), "at most 100"),
        (("--role", "partner", "--name", "\u200b"), "blank"),
    ]:
        refused = aduan("token", "create", *args, env=env)
        assert refused.returncode == 2, (args, refused.stderr)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert words in lines[0]
        assert "Traceback" not in refused.stderr
    # (A revoked token's name is refused by the same function: tests/shared/test_auth.py.)


async def test_an_administrator_lists_and_stops_anyones_webhook_subscription(
    services: BackingServices,
) -> None:
    """The API shows each caller its own subscriptions alone: the command line shows an
    administrator all of them, and stops one at once."""
    partner = await services.token("partner", "posko-pln")
    other = await services.token("admin", "admin.kantor")  # hears of every complaint
    env = services.env()
    with receiving() as stopped_hooks, receiving() as other_hooks:
        async with running_app(services, webhook_allow_http=True,
                               webhook_allow_private=True) as client:
            created = []
            for token, hooks in ((partner, stopped_hooks), (other, other_hooks)):
                response = await client.post("/v1/webhooks", headers=bearer(token), json={
                    "url": hooks.url, "events": ["complaint.received"]})
                assert response.status_code == 201, response.text
                created.append(response.json()["id"])
            listed = await asyncio.to_thread(aduan, "webhook", "list", env=env)
            assert listed.returncode == 0, listed.stderr
            rows = [line.split("\t") for line in listed.stdout.splitlines()]
            assert [(r[0], r[1], r[3]) for r in rows] == [
                (created[0], "posko-pln", "active"), (created[1], "admin.kantor", "active")]
            mine = await asyncio.to_thread(aduan, "webhook", "list", "--owner", "admin.kantor",
                                           env=env)
            assert [line.split("\t")[0] for line in mine.stdout.splitlines()] == [created[1]]

            stop = await asyncio.to_thread(aduan, "webhook", "stop", created[0], env=env)
            assert stop.returncode == 0, stop.stderr
            seen = (await client.get(f"/v1/webhooks/{created[0]}",
                                     headers=bearer(partner))).json()
            assert seen["active"] is False
            assert seen["disabled_reason"] == "stopped by an administrator"
            posted = await client.post("/v1/complaints", json=complaint(),
                                       headers=bearer(partner))
            assert posted.status_code == 201

            async def other_heard() -> None:
                assert len(other_hooks.requests()) == 1

            await eventually(other_heard, timeout=30)
            assert stopped_hooks.requests() == []
            unknown = await asyncio.to_thread(aduan, "webhook", "stop", str(uuid.uuid4()),
                                              env=env)
            assert unknown.returncode == 1
