"""A probe service for the bus contract, and the two buses it can run on.

The probe keeps its own schema (``probe``): an outbox that is its log, the consumer tables of
``shared.tables``, and ``effects``, one row per event its handler applied. An event with two rows
is an effect doubled, an event with none was lost, and the order of the rows of one key is the
order the bus delivered that key's events in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import (
    DatabaseLogRunner,
    KafkaConsumerRunner,
    RetryLater,
    RetryPolicy,
    Subscription,
    UnknownEventType,
)
from shared.db import Database
from shared.events import CONTENT_TYPE, TYPE_PREFIX, Event, new_event
from shared.kafka_client import Headers, KafkaPublisher
from shared.outbox import OutboxRelay, append, unpublished_count
from shared.tables import event_tables
from tests.support import eventually

PROBE_TOPIC = "aduan.probe.v1"
PROBED = TYPE_PREFIX + "probe.recorded.v1"
CONSUMER = "aduan-probe"
SOURCE = "/aduan/probe"

METADATA = MetaData()
PROBE_EVENTS = event_tables(METADATA, "probe")
EFFECTS = Table(
    "effects", METADATA,
    Column("applied", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("key", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
    schema="probe",
)
GATES = Table("gates", METADATA, Column("name", String(100), primary_key=True), schema="probe")

POLICY = RetryPolicy(attempts=3, retry_later_seconds=30.0, pause=0.05)
BATCH = 50


def probe_event(key: str, seq: int, **data: Any) -> Event:
    return new_event(PROBED, source=SOURCE, subject=key, data={"seq": seq, **data})


@dataclass(frozen=True)
class Effect:
    event_id: str
    key: str
    seq: int


@dataclass(frozen=True)
class DeadLetter:
    event_id: str | None
    error: str


@dataclass
class Probe:
    database: Database
    attempts: Counter[str] = field(default_factory=Counter)  # handler calls per event id

    async def handle(self, session: AsyncSession, event: Event) -> None:
        """Records the effect; ``fail`` never applies, ``after`` waits for its gate to open."""
        self.attempts[event.id] += 1
        if event.type != PROBED:
            raise UnknownEventType(event.type)
        if event.data.get("fail"):
            raise ValueError(f"event {event.id} always fails")
        gate = event.data.get("after")
        if gate is not None and await session.scalar(
                select(GATES.c.name).where(GATES.c.name == gate)) is None:
            raise RetryLater(f"gate {gate} is still closed")
        await session.execute(EFFECTS.insert().values(event_id=event.id, key=event.subject,
                                                      seq=event.data["seq"]))
        opens = event.data.get("opens")
        if opens is not None:  # an event another one waits for, maybe on another partition
            await session.execute(GATES.insert().values(name=opens))

    @property
    def subscription(self) -> Subscription:
        return Subscription(CONSUMER, (PROBE_TOPIC,), self.handle, PROBE_EVENTS)

    @classmethod
    async def create(cls, url: str) -> Probe:
        database = Database.connect(url, pool_size=5)
        async with database.engine.begin() as connection:
            await connection.execute(text("CREATE SCHEMA probe"))
            await connection.run_sync(METADATA.create_all)
        return cls(database)

    async def append(self, *events: Event) -> None:
        """Appends ``events`` in one transaction, as a service writing its outbox does."""
        async with self.database.transaction() as session:
            for event in events:
                await append(session, PROBE_EVENTS, PROBE_TOPIC, event)

    async def effects(self) -> list[Effect]:
        async with self.database.transaction() as session:
            rows = await session.execute(select(EFFECTS.c.event_id, EFFECTS.c.key, EFFECTS.c.seq)
                                         .order_by(EFFECTS.c.applied))
            return [Effect(*row) for row in rows]

    async def open_gate(self, name: str) -> None:
        async with self.database.transaction() as session:
            await session.execute(GATES.insert().values(name=name))

    async def unpublished(self) -> int:
        async with self.database.transaction() as session:
            return await unpublished_count(session, PROBE_EVENTS)

    async def last_position(self) -> int:
        async with self.database.transaction() as session:
            last = await session.scalar(select(func.max(PROBE_EVENTS.outbox.c.position)))
            return int(last or 0)


class Bus(Protocol):
    """What the contract needs of a bus: a consumer that can be stopped, rewound and restarted."""

    probe: Probe
    background: Background

    async def start(self) -> None:
        """Starts the consumer (and whatever carries the outbox to it)."""

    async def stop(self) -> None:
        """Stops mid-work, like a process that is killed: what was not committed is lost."""

    async def rewind(self) -> None:
        """Moves the stopped consumer back to the start of the log."""

    async def caught_up(self) -> None:
        """Raises AssertionError unless the consumer has moved past every record of the log."""

    async def inject(self, raw: bytes) -> None:
        """Puts ``raw`` on the log the way a foreign producer would, bypassing the outbox."""

    async def dead_letters(self) -> list[DeadLetter]:
        ...

    async def close(self) -> None:
        ...


@dataclass
class Background:
    """The bus's consumers and relays, run as a service runs them."""

    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        async def task() -> None:
            await run()
        self.tasks.append(asyncio.create_task(task(), name=name))

    def check(self) -> None:
        """Raises what ended a task: the service would have restarted it, the test says so."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"{task.get_name()} failed") from task.exception()

    async def cancel(self) -> None:
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class DatabaseBus:
    probe: Probe
    background: Background = field(default_factory=Background)

    async def start(self) -> None:
        runner = DatabaseLogRunner(self.probe.subscription, self.probe.database,
                                   {PROBE_TOPIC: PROBE_EVENTS}, poll_seconds=0.05,
                                   batch_size=BATCH, policy=POLICY)
        self.background.spawn("consumer", runner.run)

    async def stop(self) -> None:
        await self.background.cancel()

    async def rewind(self) -> None:
        positions = PROBE_EVENTS.log_positions
        async with self.probe.database.transaction() as session:
            await session.execute(update(positions).where(positions.c.consumer == CONSUMER)
                                  .values(position=0))

    async def position(self) -> int:
        positions = PROBE_EVENTS.log_positions
        async with self.probe.database.transaction() as session:
            position = await session.scalar(select(positions.c.position).where(
                positions.c.consumer == CONSUMER, positions.c.log == PROBE_TOPIC))
            return int(position or 0)

    async def caught_up(self) -> None:
        assert await self.position() == await self.probe.last_position()

    async def inject(self, raw: bytes) -> None:
        async with self.probe.database.transaction() as session:
            await session.execute(PROBE_EVENTS.outbox.insert().values(
                event_id=str(uuid.uuid4()), topic=PROBE_TOPIC, key="injected",
                envelope=json.loads(raw)))

    async def dead_letters(self) -> list[DeadLetter]:
        dead = PROBE_EVENTS.dead_letters
        async with self.probe.database.transaction() as session:
            rows = await session.execute(select(dead.c.event_id, dead.c.error)
                                         .where(dead.c.consumer == CONSUMER).order_by(dead.c.id))
            return [DeadLetter(*row) for row in rows]

    async def close(self) -> None:
        await self.stop()


@dataclass
class KafkaBus:
    probe: Probe
    bootstrap_servers: str
    prefix: str
    background: Background = field(default_factory=Background)
    publisher: KafkaPublisher = field(init=False)
    relay: OutboxRelay = field(init=False)

    def __post_init__(self) -> None:
        self.publisher = KafkaPublisher(self.bootstrap_servers, topic_prefix=self.prefix)
        self.relay = OutboxRelay(self.probe.database, PROBE_EVENTS, self.publisher,
                                 poll_seconds=0.05)

    @property
    def topic(self) -> str:
        return self.publisher.topic(PROBE_TOPIC)

    @property
    def group(self) -> str:
        return self.prefix + CONSUMER

    def runner(self) -> KafkaConsumerRunner:
        return KafkaConsumerRunner(self.probe.subscription, self.probe.database,
                                   bootstrap_servers=self.bootstrap_servers,
                                   publisher=self.publisher, policy=POLICY, max_records=BATCH,
                                   group_prefix=self.prefix)

    async def start(self) -> None:
        self.background.spawn("relay", self.relay.run)
        self.background.spawn("consumer", self.runner().run)

    async def stop(self) -> None:
        await self.background.cancel()

    async def rewind(self) -> None:
        await commit_offsets(self.bootstrap_servers, self.group, self.topic, offset=0)

    async def caught_up(self) -> None:
        assert await self.probe.unpublished() == 0
        committed, ends = await group_offsets(self.bootstrap_servers, self.group, self.topic)
        assert ends or await self.probe.last_position() == 0, "nothing reached the broker"
        assert committed == ends

    async def produce(self, value: bytes | None, *, key: bytes = b"injected",
                      headers: Headers | None = None) -> None:
        await self.publisher.publish_raw(
            self.topic, value=value, key=key,
            headers=[("content-type", CONTENT_TYPE.encode())] if headers is None else headers)

    async def inject(self, raw: bytes) -> None:
        await self.produce(raw)

    @property
    def dead_letter_topic(self) -> str:
        return self.runner().dlq_topic(self.topic)

    async def dead_letter_records(self) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_topic(self.bootstrap_servers, self.dead_letter_topic)

    async def dead_letters(self) -> list[DeadLetter]:
        letters = []
        for record in await self.dead_letter_records():
            headers = dict(record.headers)
            try:
                event_id = str(json.loads(record.value)["id"])
            except (TypeError, ValueError, KeyError):
                event_id = None
            letters.append(DeadLetter(event_id, headers["error"].decode()))
        return letters

    async def close(self) -> None:
        await self.stop()
        await self.publisher.close()


# --- reading and steering the real broker ------------------------------------------------------

async def partitions_of(bootstrap_servers: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions ([] while it does not exist; asking does not create it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        [described] = await admin.describe_topics([topic])
        return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])
    finally:
        await admin.close()


async def read_topic(bootstrap_servers: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from offset 0 to its end, partition by partition."""
    partitions = await partitions_of(bootstrap_servers, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {
            p: [] for p in partitions}
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            for partition, batch in (await consumer.getmany(timeout_ms=500)).items():
                records[partition].extend(batch)
        return [record for p in partitions for record in records[p]]
    finally:
        await consumer.stop()


async def group_offsets(bootstrap_servers: str, group: str,
                        topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset (0 where none) and the end offset, per partition."""
    partitions = await partitions_of(bootstrap_servers, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions) if partitions else {}
        committed = {p.partition: int(await consumer.committed(p) or 0) for p in partitions}
        return committed, {p.partition: int(offset) for p, offset in ends.items()}
    finally:
        await consumer.stop()


async def commit_offsets(bootstrap_servers: str, group: str, topic: str, *, offset: int) -> None:
    """Commits ``offset`` on every partition of ``topic`` for ``group`` (which must be idle)."""
    partitions = await partitions_of(bootstrap_servers, topic)
    assert partitions, f"topic {topic} does not exist"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, offset))
    finally:
        await consumer.stop()


# --- what the tests write and check ------------------------------------------------------------

KEYS = [f"case-{n}" for n in range(6)]


async def append_concurrently(probe: Probe, per_key: int, *, batch: int = 7) -> list[Event]:
    """One writer per key, all at once, each appending its key's events in small transactions."""

    async def writer(key: str) -> list[Event]:
        events = [probe_event(key, seq) for seq in range(per_key)]
        for start in range(0, per_key, batch):
            await probe.append(*events[start:start + batch])
        return events

    written = await asyncio.gather(*(writer(key) for key in KEYS))
    return [event for events in written for event in events]


async def applied(bus: Bus, count: int) -> list[Effect]:
    """The effects once there are ``count`` and the consumer has moved past the whole log."""

    async def check() -> list[Effect]:
        bus.background.check()
        effects = await bus.probe.effects()
        assert len(effects) >= count, f"{len(effects)} of {count} applied"
        await bus.caught_up()
        return effects

    return await eventually(check, timeout=60, interval=0.05)


def applied_ids(effects: list[Effect]) -> Counter[str]:
    return Counter(effect.event_id for effect in effects)


def ids(events: list[Event]) -> Counter[str]:
    return Counter(event.id for event in events)
