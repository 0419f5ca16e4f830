"""Every figure is replayable: a rebuild from the start of the log gives the same numbers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from sqlalchemy import text

from metrics_worker import service
from metrics_worker.periods import parse_period
from metrics_worker.rebuild import RebuildRefused, _next, check_tables, read_model_tables, rebuild
from services import published_quarter
from services.published_quarter import Api
from shared.db import Database
from shared.events import COMPLAINTS_TOPIC
from tests.fixtures import expected
from tests.fixtures.expected import comparable
from tests.fixtures.history import (
    PERIODS,
    damage_read_model,
    figures,
    log_records,
    read_model_counts,
    run_cli,
    sample,
    settled,
)
from tests.support import BackingServices, ServiceProcess, running_app, start_services

pytestmark = pytest.mark.timeout(300)


@dataclass
class Recorder:
    total: int | None = None
    completed: list[int] = field(default_factory=list)

    def start(self, total: int) -> None:
        self.total = total

    def update(self, completed: int) -> None:
        self.completed.append(completed)


async def test_rebuild_from_the_database_log(services: BackingServices) -> None:
    admin = await services.token("admin")
    history = sample(every=9)
    async with running_app(services) as client:
        await published_quarter.load(Api(client, admin), history)
        await settled(services.database_url, history)
        before = await figures(client, "", admin)
    assert before["summary {'period': '2022-Q1'}"]["targets"]["closures"]["target"] == 260
    for query, first, last in PERIODS:  # the definitions, applied to the history itself
        computed = comparable(before[f"summary {query!r}"])
        assert computed == expected.summary(history, first, last), query

    # The service is stopped; the read model is damaged beyond what redelivery could repair.
    await damage_read_model(services.database_url)
    assert await direct_summary(services, "2022-Q1") != before["summary {'period': '2022-Q1'}"]
    recorder = Recorder()
    result = await rebuild(services.settings(), progress=recorder)
    assert result.mode == "database"
    assert result.records == recorder.total == recorder.completed[-1] == log_records(history)
    assert recorder.completed == sorted(recorder.completed)
    assert await read_model_counts(services.database_url) == (len(history.records),
                                                              history.transitions)
    async with running_app(services) as client:
        assert await figures(client, "", admin) == before  # targets kept: not from events

    # A second rebuild over a healthy model changes nothing either.
    again = await rebuild(services.settings())
    assert again.records == result.records
    async with running_app(services) as client:
        assert await figures(client, "", admin) == before


async def direct_summary(services: BackingServices, period: str) -> dict[str, Any]:
    settings = services.settings()
    async with Database.opened(services.database_url) as database, \
            database.transaction() as session:
        summary = await service.summary(session, parse_period(period), settings.zone)
    return summary.model_dump(mode="json", by_alias=True)


async def test_every_metrics_table_is_derived_or_kept(database_url: str) -> None:
    """A new table in the schema must be classified before a rebuild may run."""
    assert {"contacts", "cases", "transitions"} <= set(read_model_tables())
    assert "targets" not in read_model_tables()
    async with Database.opened(database_url) as database, database.transaction() as session:
        assert await check_tables(session) == read_model_tables()
        await session.execute(text("CREATE TABLE metrics.mystery (id int)"))
        with pytest.raises(RebuildRefused, match=r"metrics\.mystery: not known"):
            await check_tables(session)


async def test_rebuild_from_kafka_with_the_metrics_service_stopped(
    kafka_services: BackingServices, tmp_path: Path,
) -> None:
    env = kafka_services.env()
    processes = start_services(kafka_services, tmp_path, env)
    try:
        admin = await kafka_services.token("admin")
        await asyncio.gather(*(p.wait_ready() for p in processes.values()))
        history = sample(every=8)
        api = Api(httpx.AsyncClient(timeout=60), admin, intake=processes["intake"].url,
                  case=processes["case"].url, metrics=processes["metrics"].url)
        async with api.client as client:
            await published_quarter.load(api, history)
            await settled(kafka_services.database_url, history)
            before = await figures(client, api.metrics, admin)
            for query, first, last in PERIODS:
                computed = comparable(before[f"summary {query!r}"])
                assert computed == expected.summary(history, first, last), query

            # Refused while the metrics service is a member of the group.
            with pytest.raises(RebuildRefused, match=r"active member.*stop every metrics service"):
                await rebuild(kafka_services.settings())

            processes["metrics"].stop()
            await damage_read_model(kafka_services.database_url)
            code, out, err = await run_cli(env, "metrics", "rebuild")
            assert code == 0, err
            assert f"rebuilt from the Kafka topics: {log_records(history)} records" in out
            # The rebuild itself, with no metrics service running, restored the read model.
            assert await read_model_counts(kafka_services.database_url) == (
                len(history.records), history.transitions)

            restarted = ServiceProcess("metrics", env, tmp_path / "metrics-2.log").start()
            processes["metrics"] = restarted
            await restarted.wait_ready()
            assert await figures(client, restarted.url, admin) == before
            restarted.stop()

        # Records gone from the start of a topic cannot be replayed: refused, not partial.
        kafka_admin = AIOKafkaAdminClient(bootstrap_servers=kafka_services.kafka)
        await kafka_admin.start()
        try:
            topic = kafka_services.prefix + COMPLAINTS_TOPIC
            await kafka_admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(1)})
        finally:
            await kafka_admin.close()
        with pytest.raises(RebuildRefused, match="no longer starts at offset 0"):
            await rebuild(kafka_services.settings())
        assert await read_model_counts(kafka_services.database_url) == (
            len(history.records), history.transitions)  # refused before touching anything
    finally:
        for process in processes.values():
            process.stop()


async def test_the_fold_takes_what_was_read_ahead_then_stops_when_the_reader_ended_unfinished(
) -> None:
    fetched: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
    batch: dict[TopicPartition, list[Any]] = {TopicPartition("t", 0): []}
    fetched.put_nowait(batch)
    reading = asyncio.create_task(asyncio.sleep(30))  # ends without its end marker
    await asyncio.sleep(0)
    reading.cancel()
    assert await asyncio.wait_for(_next(fetched, reading), 5) is batch
    assert await asyncio.wait_for(_next(fetched, reading), 5) is None
    assert reading.cancelled()
