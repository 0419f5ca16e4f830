"""The whole pipeline end to end, in both ways the system runs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from services.postgres import start_postgres
from shared.events import CASES_TOPIC, COMPLAINTS_TOPIC
from tests import scenario
from tests.shared.kafka_topics import commit_offsets, group_offsets, partitions_of
from tests.support import BackingServices, ServiceProcess, eventually, start_services

pytestmark = pytest.mark.timeout(600)


async def rewind_group(bootstrap: str, group: str, topics: list[str]) -> int:
    """Commits offset 0 for every partition of ``topics`` in ``group``; returns the partitions."""
    for topic in topics:
        await commit_offsets(bootstrap, group, topic, offset=0)
    return sum([len(await partitions_of(bootstrap, topic)) for topic in topics])


async def group_caught_up(bootstrap: str, group: str, topics: list[str]) -> None:
    for topic in topics:
        committed, ends = await group_offsets(bootstrap, group, topic)
        assert committed == ends, (topic, committed, ends)


async def test_three_processes_on_kafka(kafka_services: BackingServices, tmp_path: Path) -> None:
    processes = start_services(kafka_services, tmp_path)
    try:
        await asyncio.gather(*(p.wait_ready() for p in processes.values()))
        at = scenario.Endpoints(processes["intake"].url, processes["case"].url,
                                processes["metrics"].url)
        tokens = scenario.Tokens(
            partners=[await kafka_services.token("partner", "posko-pln"),
                      await kafka_services.token("partner", "lapor")],
            assistant=await kafka_services.token("assistant", "asisten.pvl"))
        analyst = await kafka_services.token("analyst")
        async with httpx.AsyncClient(timeout=30) as client:
            outcome = await scenario.run(client, at, tokens)
            before = await scenario.metrics_match(client, at, analyst, outcome)
            await scenario.statuses_follow(client, at, tokens, outcome)

            # Redelivery: rewind the metrics group to offset 0 and restart the worker.
            processes["metrics"].stop()
            prefix = kafka_services.prefix
            topics = [prefix + COMPLAINTS_TOPIC, prefix + CASES_TOPIC]
            group = prefix + "aduan-metrics"
            assert await rewind_group(kafka_services.kafka or "", group, topics) > 0
            restarted = ServiceProcess("metrics", kafka_services.env(),
                                       tmp_path / "metrics-2.log")
            processes["metrics"] = restarted.start()
            await restarted.wait_ready()
            at.metrics = restarted.url
            await eventually(lambda: group_caught_up(kafka_services.kafka or "", group, topics),
                             timeout=60, interval=0.5)
            after = await scenario.metrics_match(client, at, analyst, outcome)
            assert scenario.project(after) == scenario.project(before)
    finally:
        for process in processes.values():
            process.stop()


async def test_all_in_one_on_the_embedded_default(tmp_path: Path, server_url: str) -> None:
    """``aduan serve`` with no URLs: its own embedded PostgreSQL and the database event log."""
    env = BackingServices(database_url="", kafka=None, workdir=tmp_path).env()
    del env["ADUAN_DATABASE_URL"]
    data_dir = Path(env["ADUAN_DATA_DIR"])
    server = ServiceProcess("all", env, tmp_path / "all.log").start()
    try:
        await server.wait_ready(timeout=120)
        admin_token = (data_dir / "admin-token").read_text().strip()
        assert (data_dir / "admin-token").stat().st_mode & 0o777 == 0o600
        tokens = scenario.Tokens(
            partners=[await cli_token(env, "partner", "posko-pln"),
                      await cli_token(env, "partner", "lapor")],
            assistant=await cli_token(env, "assistant", "asisten.pvl"))
        at = scenario.Endpoints(server.url, server.url, server.url)
        async with httpx.AsyncClient(timeout=30) as client:
            outcome = await scenario.run(client, at, tokens)
            before = await scenario.metrics_match(client, at, admin_token, outcome)
            await scenario.statuses_follow(client, at, tokens, outcome)

            # Redelivery: move the metrics consumer back to position 0 and restart.
            server.stop()  # stops the PostgreSQL it started too; start it to move the position
            pg = await asyncio.to_thread(start_postgres, data_dir / "pgdata")
            connection = await asyncpg.connect(host=pg.socket_dir, port=pg.port,
                                               user="postgres", database="aduan")
            try:
                moved = await connection.execute(
                    "UPDATE metrics.log_positions SET position = 0 WHERE consumer = $1",
                    "aduan-metrics")
                assert moved == "UPDATE 2"
            finally:
                await connection.close()
            again = ServiceProcess("all", env, tmp_path / "all-2.log", port=server.port).start()
            server = again
            await again.wait_ready(timeout=120)
            after = await scenario.metrics_match(client, at, admin_token, outcome)
            assert scenario.project(after) == scenario.project(before)
    finally:
        server.stop()
        _stop_embedded(data_dir)
    assert make_url(server_url)  # the suite's own server is untouched by this test


async def cli_token(env: dict[str, str], role: str, name: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "token", "create", "--role", role, "--name", name,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


def _stop_embedded(data_dir: Path) -> None:
    from services.postgres import pg_ctl

    if (data_dir / "pgdata" / "postmaster.pid").exists():
        pg_ctl(data_dir.resolve() / "pgdata", "stop", "-m", "fast")
