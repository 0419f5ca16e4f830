"""Rebuilding the metrics read model from the start of its event log (``aduan metrics rebuild``).

The read model (``metrics.contacts``, ``metrics.cases``, ``metrics.transitions``, ...) is
derived from events only, so it can be dropped and replayed with the same handler the metrics
service runs (``metrics_worker.consumer.project``) and the same bus code:

- **Kafka** (``ADUAN_KAFKA_BOOTSTRAP_SERVERS`` set): the group ``<ADUAN_GROUP_PREFIX>aduan-metrics``
  is moved to offset 0 on every partition of its two topics, then consumed by a
  ``KafkaConsumerRunner`` until its committed offsets reach the end offsets measured at the start.
  The group must have no active member: stop the metrics service first. A rebuild refuses to run
  while the group has members, and when a topic no longer starts at offset 0 (records removed by
  retention could not be replayed).
- **Database log** (no Kafka): the outbox tables are replayed by a ``DatabaseLogRunner`` from
  position 0 until no rows are left. Stop ``aduan serve`` first: nothing can tell from the
  database alone whether it runs, and figures read during a rebuild are incomplete.

Emptied: every table of the ``metrics`` schema mapped in ``metrics_worker.models``, except
``targets`` (set by people, not derived from events). Kept as well: ``office`` (the configured
time zone) and the bus's own tables (dead letters; this consumer's processed events and
log positions are forgotten). A table of the schema that is none of these stops the rebuild
before anything is touched: decide here whether it is derived.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.consumer import CONSUMER, SUBSCRIPTION
from metrics_worker.models import SCHEMA
from shared.bus import DatabaseLogRunner, KafkaConsumerRunner
from shared.db import Base, Database
from shared.kafka_client import KafkaPublisher
from shared.runtime import DATABASE_LOGS
from shared.settings import Settings
from shared.tables import METRICS_EVENTS

KEPT_TABLES = frozenset({"targets", "office"})  # set by people or by configuration
BUS_TABLES = frozenset(t.name for t in (
    METRICS_EVENTS.processed_events, METRICS_EVENTS.log_positions, METRICS_EVENTS.dead_letters))


def read_model_tables() -> list[str]:
    """The tables derived from events only: emptied and filled again by a rebuild."""
    return sorted(t.name for t in Base.metadata.tables.values()
                  if t.schema == SCHEMA and t.name not in KEPT_TABLES | BUS_TABLES)


class RebuildRefused(RuntimeError):
    """The rebuild would not give complete figures, or would race a running metrics service."""


class ProgressReport(Protocol):
    """Where a rebuild reports how far it got; ``total`` is the number of records to replay."""

    def start(self, total: int) -> None: ...

    def update(self, completed: int) -> None: ...


class Silent:
    def start(self, total: int) -> None:
        pass

    def update(self, completed: int) -> None:
        pass


class ProgressBar:
    """A ``rich`` progress bar on standard error."""

    def __init__(self, description: str = "replaying events") -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("records"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.description = description
        self.task: TaskID | None = None

    @contextlib.contextmanager
    def shown(self) -> Iterator[ProgressBar]:
        with self.progress:
            yield self

    def start(self, total: int) -> None:
        self.task = self.progress.add_task(self.description, total=total)

    def update(self, completed: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=completed)


@dataclass(frozen=True)
class RebuildResult:
    mode: Literal["kafka", "database"]
    records: int  # records replayed (the progress bar's total)
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def check_tables(session: AsyncSession) -> list[str]:
    """The read model's tables present; refuses when the schema holds a table not classified."""
    present = set((await session.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
        {"schema": SCHEMA})).scalars())
    derived = read_model_tables()
    unknown = present - set(derived) - KEPT_TABLES - BUS_TABLES
    if unknown:
        raise RebuildRefused(
            f"{', '.join(f'{SCHEMA}.{t}' for t in sorted(unknown))}: not known as derived "
            "from events nor as kept; classify it in metrics_worker/rebuild.py first")
    return [t for t in derived if t in present]


async def reset_read_model(session: AsyncSession) -> None:
    """Empties the read model and forgets what this consumer processed (targets are kept)."""
    tables = await check_tables(session)
    await session.execute(text(f"TRUNCATE {', '.join(f'{SCHEMA}.{t}' for t in tables)}"))
    for table in (METRICS_EVENTS.processed_events, METRICS_EVENTS.log_positions):
        await session.execute(table.delete().where(table.c.consumer == CONSUMER))


async def rebuild(settings: Settings, *, progress: ProgressReport | None = None,
                  poll_seconds: float = 0.2) -> RebuildResult:
    """Drops the read model and replays every event; Kafka when configured, else the database."""
    if settings.database_url is None:
        raise RuntimeError("ADUAN_DATABASE_URL is not set")
    async with Database.opened(settings.database_url, pool_size=2) as database:
        if settings.kafka_bootstrap_servers:
            return await _rebuild_from_kafka(settings, settings.kafka_bootstrap_servers,
                                             database, progress or Silent(), poll_seconds)
        return await _rebuild_from_database(database, progress or Silent())


# --- the database-backed log -------------------------------------------------------------------

async def _rebuild_from_database(database: Database, progress: ProgressReport) -> RebuildResult:
    started = time.monotonic()
    async with database.transaction() as session:
        total = 0
        for topic in SUBSCRIPTION.topics:
            outbox = DATABASE_LOGS[topic].outbox
            total += int((await session.execute(
                select(func.count()).select_from(outbox))).scalar_one())
        await reset_read_model(session)
    progress.start(total)
    runner = DatabaseLogRunner(SUBSCRIPTION, database, DATABASE_LOGS, batch_size=1000)
    done = 0
    while True:
        moved = 0
        for topic in SUBSCRIPTION.topics:
            moved += await runner.step(topic)
        if not moved:
            break
        done += moved
        progress.update(done)
    return RebuildResult("database", done, time.monotonic() - started)


# --- Kafka -------------------------------------------------------------------------------------

async def _rebuild_from_kafka(settings: Settings, bootstrap: str, database: Database,
                              progress: ProgressReport, poll_seconds: float) -> RebuildResult:
    started = time.monotonic()
    group = settings.group_prefix + CONSUMER
    topics = [settings.topic(t) for t in SUBSCRIPTION.topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="aduan-metrics-rebuild")
    await admin.start()
    try:
        async with database.transaction() as session:
            await check_tables(session)
        await refuse_if_active(admin, group)
        partitions, starts, ends = await _extent(admin, bootstrap, topics)
        cut = {tp: offset for tp, offset in starts.items() if offset > 0}
        if cut:
            raise RebuildRefused(
                "the log no longer starts at offset 0 (records removed by retention cannot be "
                "replayed): " + ", ".join(f"{tp.topic}[{tp.partition}] starts at {offset}"
                                          for tp, offset in sorted(cut.items())))
        await _rewind(bootstrap, group, partitions)
        async with database.transaction() as session:
            await reset_read_model(session)
        total = sum(ends.values())
        progress.start(total)
        publisher = KafkaPublisher(bootstrap, topic_prefix=settings.topic_prefix,
                                   client_id="aduan-metrics-rebuild")
        runner = KafkaConsumerRunner(SUBSCRIPTION, database, bootstrap_servers=bootstrap,
                                     publisher=publisher, group_prefix=settings.group_prefix)
        task = asyncio.create_task(runner.run(), name="metrics-rebuild")
        try:
            while True:
                committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
                positions = {tp: max(0, committed[tp].offset) if tp in committed else 0
                             for tp in partitions}
                progress.update(sum(min(positions[tp], ends[tp]) for tp in partitions))
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    break
                if task.done():
                    task.result()  # raises what stopped the consumer
                    raise RuntimeError("the rebuild consumer stopped before the end of the log")
                await asyncio.sleep(poll_seconds)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await publisher.close()
        return RebuildResult("kafka", total, time.monotonic() - started)
    finally:
        await admin.close()


async def refuse_if_active(admin: AIOKafkaAdminClient, group: str) -> None:
    """Raises ``RebuildRefused`` while ``group`` has members (a metrics service is running)."""
    for response in await admin.describe_consumer_groups([group]):
        for described in response.to_object()["groups"]:
            error, group_id = described["error_code"], described["group"]
            state, members = described["state"], described["members"]
            if error != 0:
                raise RebuildRefused(f"cannot tell whether the consumer group {group_id!r} "
                                     f"has members (Kafka error code {error})")
            if members:
                raise RebuildRefused(
                    f"the consumer group {group_id!r} has {len(members)} active member(s) "
                    f"(state {state}): stop every metrics service (`aduan serve metrics` or "
                    f"`aduan serve`) before rebuilding")


async def _extent(admin: AIOKafkaAdminClient, bootstrap: str, topics: list[str]) -> tuple[
        list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Every partition of ``topics`` with its first and end offset, as of now."""
    existing = sorted(set(topics) & set(await admin.list_topics()))
    if not existing:
        return [], {}, {}
    partitions = sorted(TopicPartition(described["topic"], p["partition"])
                        for described in await admin.describe_topics(existing)
                        for p in described["partitions"])
    if not partitions:
        return [], {}, {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return partitions, dict(starts), dict(ends)
    finally:
        await consumer.stop()


async def _rewind(bootstrap: str, group: str, partitions: list[TopicPartition]) -> None:
    """Commits offset 0 for every partition in ``group`` (which has no member)."""
    if not partitions:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()
