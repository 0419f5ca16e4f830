"""The set-based rebuild leaves the read model exactly as the live projection does.

One untidy log (``tests.fixtures.event_log``: duplicates under one id and under two, steps of
every workflow path, liaison requests and responses, records nobody can apply, and steps of a
closed case the workflow never takes) is applied by the
live consumer, then rebuilt: every table of the ``metrics`` schema, the processed-event guard
and the log positions must be equal row for row. The rest of the log then arrives, with old
records delivered again, and the live consumer must go on from the rebuild counting each event
once: the result must equal a rebuild of the whole log (in one batch). Against both buses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from sqlalchemy import text

from metrics_worker import aggregates, tally
from metrics_worker.consumer import CONSUMER, SUBSCRIPTION
from metrics_worker.rebuild import read_model_tables, rebuild
from metrics_worker.replay import CASE_COLUMNS, Replay
from metrics_worker.tally import Tally
from shared.bus import DatabaseLogRunner, KafkaConsumerRunner, RetryPolicy
from shared.db import Base, Database
from shared.kafka_client import KafkaPublisher
from shared.runtime import DATABASE_LOGS
from tests.fixtures.event_log import Log, Record, generate, to_database, to_kafka
from tests.shared.batches import processed_ids
from tests.support import BackingServices

pytestmark = pytest.mark.timeout(240)

# Short waits for the case not known yet: the live consumer then dead-letters what the rebuild
# sets aside at once.
POLICY = RetryPolicy(attempts=2, retry_later_seconds=0.3, pause=0.05)


async def snapshot(database_url: str) -> dict[str, list[Any]]:
    """Every derived table, the processed-event guard and the positions, in a stable order."""
    result: dict[str, list[Any]] = {}
    async with Database.opened(database_url) as database, database.transaction() as session:
        for table in read_model_tables():
            columns = len(Base.metadata.tables[f"metrics.{table}"].columns)
            order = ", ".join(str(i + 1) for i in range(columns))
            result[table] = [tuple(row) for row in await session.execute(
                text(f"SELECT * FROM metrics.{table} ORDER BY {order}"))]
        result["processed_events"] = await processed_ids(session, SUBSCRIPTION)
        result["log_positions"] = [tuple(row) for row in await session.execute(text(
            "SELECT log, position FROM metrics.log_positions WHERE consumer = :c ORDER BY 1"),
            {"c": CONSUMER})]
        # The rebuild drops and builds the secondary indexes: built again as migrated.
        result["indexes"] = [tuple(row) for row in await session.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'metrics' "
            "ORDER BY 1"))]
    return result


def split(log: Log, share: float) -> tuple[Log, Log]:
    """The log's first ``share`` of records, and the rest with some of the first delivered
    again (a relay that published them and crashed before marking them sent)."""
    cut = int(len(log.records) * share)
    first, rest = log.records[:cut], log.records[cut:]
    again = [r for r in first[::23] if r.event_id is not None]
    return Log(records=first), Log(records=[*rest[:len(rest) // 2], *again,
                                            *rest[len(rest) // 2:]])


def reopened(log: Log) -> Log:
    """``log`` with steps the workflow never takes but the projection applies all the same: a
    case closed in the first part of the log steps on from closed, twice, later on (the second
    step also delivered again under another id)."""
    records = list(log.records)
    cut = int(len(records) * 0.5)
    closing = next(i for i, r in enumerate(records[:cut // 2])
                   if json.loads(r.value).get("data", {}).get("to_status") == "closed")
    envelope = json.loads(records[closing].value)
    steps = []
    for n, (action, to_status) in enumerate([("register", "registered"),
                                             ("start_examination", "in_examination")]):
        data = {**envelope["data"], "action": action, "to_status": to_status,
                "from_status": "closed" if n == 0 else "registered", "reason": None,
                "closure_stage": None, "version": envelope["data"]["version"] + n + 1}
        step = {**envelope, "id": str(uuid.uuid4()), "data": data}
        steps.append(Record(records[closing].topic, records[closing].key,
                            json.dumps(step).encode(), step["id"]))
    again = {**json.loads(steps[1].value), "id": str(uuid.uuid4())}
    records[cut:cut] = [*steps, Record(steps[1].topic, steps[1].key, json.dumps(again).encode(),
                                       again["id"])]
    return Log(records=records, complaints=log.complaints, cases=log.cases,
               transitions=log.transitions + len(steps), unappliable=log.unappliable)


def assert_counts(model: dict[str, list[Any]], log: Log) -> None:
    assert (len(model["contacts"]), len(model["cases"]), len(model["transitions"])) == (
        log.complaints, log.cases, log.transitions)


async def consume_database_log(database_url: str) -> None:
    """The live consumer, until both logs are read to their end."""
    async with Database.opened(database_url, pool_size=2) as database:
        runner = DatabaseLogRunner(SUBSCRIPTION, database, DATABASE_LOGS, batch_size=100,
                                   policy=POLICY)
        while sum([await runner.step(topic) for topic in SUBSCRIPTION.topics]):
            pass


async def consume_kafka(services: BackingServices) -> None:
    """The live consumer (the group the metrics service uses), until it committed every
    partition's end; it leaves the group when stopped."""
    assert services.kafka is not None
    topics = [services.prefix + t for t in SUBSCRIPTION.topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    partitions = [TopicPartition(described["topic"], p["partition"])
                  for described in await admin.describe_topics(topics)
                  for p in described["partitions"]]
    probe = AIOKafkaConsumer(bootstrap_servers=services.kafka)
    await probe.start()
    try:
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    publisher = KafkaPublisher(services.kafka, topic_prefix=services.prefix)
    async with Database.opened(services.database_url, pool_size=2) as database:
        runner = KafkaConsumerRunner(SUBSCRIPTION, database, bootstrap_servers=services.kafka,
                                     publisher=publisher, policy=POLICY, max_records=100,
                                     group_prefix=services.prefix)
        task = asyncio.create_task(runner.run())
        try:
            async with asyncio.timeout(120):
                while True:
                    assert not task.done(), task
                    await asyncio.sleep(0.2)
                    try:
                        committed = await admin.list_consumer_group_offsets(
                            services.prefix + CONSUMER, partitions=partitions)
                    except KafkaError:  # the group's coordinator, still being elected
                        continue
                    if all(tp in committed and committed[tp].offset >= end
                           for tp, end in ends.items()):
                        break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await publisher.close()
            await admin.close()


async def test_rebuild_from_the_database_log_equals_the_live_projection(
    services: BackingServices,
) -> None:
    await rebuild_equals_live_and_the_consumer_goes_on(services, "database")


async def test_rebuild_from_kafka_equals_the_live_projection(
    kafka_services: BackingServices,
) -> None:
    await rebuild_equals_live_and_the_consumer_goes_on(kafka_services, "kafka")


async def test_rebuild_equals_the_live_projection_with_agencies_assigned(
    services: BackingServices,
) -> None:
    """Cases filed under ``unassigned`` and given their agency (``assign_agency``, not a step):
    the contacts, cases and received-by-agency counts follow the agency given, alike live and
    rebuilt, wherever in the log the contact comes (the live consumer here reads the cases'
    log while the complaints' is still being read)."""
    await agencies_assigned(services, "database")


async def test_rebuild_from_kafka_equals_the_live_projection_with_agencies_assigned(
    kafka_services: BackingServices,
) -> None:
    """The same, the rebuild reading both topics' partitions interleaved."""
    await agencies_assigned(kafka_services, "kafka")


async def agencies_assigned(services: BackingServices, bus: str) -> None:
    log = reopened(generate(250, seed=11, assignments=0.25))
    assigned = [json.loads(r.value)["data"] for r in log.records
                if b'"assign_agency"' in r.value]
    assert len(assigned) > 20
    await rebuild_equals_live_and_the_consumer_goes_on(services, bus, log)
    async with Database.opened(services.database_url) as database, \
            database.transaction() as session:
        agencies: dict[str, str] = dict((await session.execute(text(
            "SELECT complaint_id::text, agency FROM metrics.contacts WHERE complaint_id = "
            "ANY(CAST(:ids AS uuid[]))"), {"ids": [d["case_id"] for d in assigned]})).all())
        unassigned = (await session.execute(text(
            "SELECT coalesce(sum(n), 0) FROM metrics.daily_counts "
            "WHERE measure = 'received_agency' AND key = 'unassigned'"))).scalar_one()
    assert agencies == {d["case_id"]: d["reported_agency"]["code"] for d in assigned}
    assert unassigned == 0


async def rebuild_equals_live_and_the_consumer_goes_on(services: BackingServices,
                                                       bus: str, log: Log | None = None) -> None:
    log = log or reopened(generate(250, seed=11))
    before, after = split(log, 0.7)

    async def feed(part: Log) -> None:
        if services.kafka:
            await to_kafka(part, services.kafka, services.prefix)
        else:
            await to_database(part, services.database_url)

    async def consume() -> None:
        if services.kafka:
            await consume_kafka(services)
        else:
            await consume_database_log(services.database_url)

    await feed(before)
    await consume()
    live = await snapshot(services.database_url)
    assert len(live["transitions"]) > 150
    assert live["daily_counts"]
    assert live["duration_histograms"]

    # Batches of a few events: what a batch's fold needs of those before it (events processed,
    # complaints counted, cases closed) is asked of the rows written, not kept in memory.
    result = await rebuild(services.settings(), batch_size=7)
    assert result.mode == bus
    # An outbox holds an event id once: a record delivered twice is one row of the log.
    distinct = {r.event_id or str(i) for i, r in enumerate(before.records)}
    assert result.records == (len(distinct) if bus == "database" else len(before.records))
    assert result.dead_lettered == log.unappliable  # the faults all fall in the first part
    rebuilt = await snapshot(services.database_url)
    for table, rows in live.items():
        assert rebuilt[table] == rows, table

    # The rest of the log, old records among it: counted once, as a rebuild of it all counts.
    await feed(after)
    await consume()
    continued = await snapshot(services.database_url)
    assert_counts(continued, log)
    await rebuild(services.settings())
    whole = await snapshot(services.database_url)
    for table, rows in whole.items():
        assert continued[table] == rows, table


def test_the_fold_keeps_only_open_cases_in_memory() -> None:
    """A closed case is handed over with its batch's rows; only its version stays behind."""
    log = generate(300, seed=5, faults=False)
    replay = Replay(Tally(UTC))
    handed_over: list[list[Any]] = []
    for start in range(0, len(log.records), 50):
        for record in log.records[start:start + 50]:
            assert replay.fold(record.value) is None
        handed_over += replay.take()[3]
    assert not replay.deferred
    open_cases = replay.case_rows()
    assert len(open_cases) + len(handed_over) == log.cases
    status, version = CASE_COLUMNS.index("status"), CASE_COLUMNS.index("version")
    assert handed_over
    assert all(case[status] == "closed" for case in handed_over)
    assert all(case[status] != "closed" for case in open_cases)
    assert replay.closed == {case[0]: case[version] for case in handed_over}


async def test_the_counts_follow_the_office_time_zone_through_daylight_saving(
    services: BackingServices,
) -> None:
    """In a zone whose offset changes twice a year, the counts the fold keeps by local day are
    those of the live projection (days computed by PostgreSQL) and those the SQL definitions of
    ``metrics_worker.aggregates`` derive from the rebuilt facts."""
    async with Database.opened(services.database_url) as database, \
            database.transaction() as session:
        await session.execute(text("UPDATE metrics.office SET timezone = 'America/New_York'"))
    log = generate(150, seed=17, faults=False)
    await to_database(log, services.database_url)
    await consume_database_log(services.database_url)
    live = await snapshot(services.database_url)
    assert live["duration_histograms"]
    await rebuild(services.settings(), batch_size=40)
    rebuilt = await snapshot(services.database_url)
    for table in tally.TABLES:
        assert rebuilt[table] == live[table], table
    async with Database.opened(services.database_url) as database, \
            database.transaction() as session:
        await session.execute(text(f"TRUNCATE {', '.join(f'metrics.{t}' for t in tally.TABLES)}"))
        await aggregates.derive(session)
    derived = await snapshot(services.database_url)
    for table in tally.TABLES:
        assert derived[table] == rebuilt[table], table


async def test_a_rebuild_leaves_the_keys_and_indexes_the_migrations_made(
    services: BackingServices,
) -> None:
    """A rebuild drops the read model's indexes and the aggregate tables' primary keys while
    it loads them, and builds them again from the rows: after it, the schema is as migrated."""
    async def keys_and_indexes() -> list[tuple[Any, ...]]:
        async with Database.opened(services.database_url) as database, \
                database.transaction() as session:
            return [tuple(row) for row in await session.execute(text(
                "SELECT 'constraint', conrelid::regclass::text, conname, "
                "pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'metrics'::regnamespace "
                "UNION ALL SELECT 'index', tablename, indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = 'metrics' ORDER BY 1, 2, 3"))]

    migrated = await keys_and_indexes()
    named = {row[2] for row in migrated}
    assert {f"pk_{table}" for table in tally.TABLES} <= named
    assert "ix_daily_counts_measure_day" in named
    await to_database(generate(40, seed=3, faults=False), services.database_url)
    await rebuild(services.settings())
    assert await keys_and_indexes() == migrated
    async with Database.opened(services.database_url) as database, \
            database.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM metrics.daily_counts"))
                ).scalar_one() > 0


async def test_a_rebuild_failing_while_its_keys_are_built_says_why_and_leaves_the_model(
    services: BackingServices, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error while the server still builds indexes on the rebuild's connection reaches the
    operator as itself, and the read model is the one before the rebuild (rolled back)."""
    await to_database(generate(40, seed=5, faults=False), services.database_url)
    await rebuild(services.settings())
    before = await snapshot(services.database_url)

    def broken(self: Tally) -> list[tuple[Any, ...]]:
        raise RuntimeError("period rows could not be made")

    monkeypatch.setattr(Tally, "period_rows", broken)
    with pytest.raises(RuntimeError, match="period rows could not be made"):
        await rebuild(services.settings())
    assert await snapshot(services.database_url) == before
