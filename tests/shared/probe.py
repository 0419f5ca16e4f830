"""A probe service for the bus contract, and the two buses it can run on.

The probe keeps its own schema (``probe``): an outbox that is its log, the consumer tables of
``shared.tables``, and ``effects``, one row per event its handler applied. An event with two rows
is an effect doubled, an event with none was lost, and the order of the rows of one key is the
order the bus delivered that key's events in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

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
)
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import (
    RetryLater,
    RetryPolicy,
    Subscription,
    UnknownEventType,
)
from shared.db import Database
from shared.events import TYPE_PREFIX, Event, new_event
from shared.outbox import append, unpublished_count
from shared.tables import event_tables

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
    @contextlib.asynccontextmanager
    async def opened(cls, url: str) -> AsyncIterator[Probe]:
        """The probe, its schema made in the database at ``url``."""
        async with Database.opened(url, pool_size=5) as database:
            async with database.engine.begin() as connection:
                await connection.execute(text("CREATE SCHEMA probe"))
                await connection.run_sync(METADATA.create_all)
            yield cls(database)

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


def applied_ids(effects: list[Effect]) -> Counter[str]:
    return Counter(effect.event_id for effect in effects)


def ids(events: list[Event]) -> Counter[str]:
    return Counter(event.id for event in events)
