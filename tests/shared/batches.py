"""Applying a consumer's events one at a time and in batches, to compare what each leaves.

``in_batches`` does what both runners do with a delivered batch: the whole batch in one
transaction, and when that fails, its events one at a time, each either applied or
dead-lettered (``tests/shared/test_bus.py`` checks the runners themselves do so).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import Applier, RetryPolicy, Subscription
from shared.db import Database
from shared.events import Event, MalformedEvent
from tests.fixtures.event_log import Log

# A case or complaint not known yet is dead-lettered after a short wait.
POLICY = RetryPolicy(attempts=2, retry_later_seconds=0.2, pause=0.02)

DeadLetters = list[tuple[str | None, str]]


def events_of(log: Log, *topics: str) -> list[Event]:
    """The log's events in order (a record delivered twice appears twice), of ``topics`` or
    all; records that are not events are left out (no handler sees them)."""
    events = []
    for record in log.records:
        if topics and record.topic not in topics:
            continue
        try:
            events.append(Event.from_json(record.value))
        except MalformedEvent:
            continue
    return events


class Applied:
    """A consumer's applier over one database, keeping what it dead-lettered."""

    def __init__(self, database: Database, subscription: Subscription) -> None:
        self.applier = Applier(database, subscription, POLICY)
        self.dead: DeadLetters = []
        self.batches_failed = 0

    async def dead_letter(self, event: Event | None, error: str) -> None:
        self.dead.append((event.id if event else None, error))

    async def one_by_one(self, events: Sequence[Event]) -> None:
        for event in events:
            await self.applier.apply_single(event, self.dead_letter)

    async def in_batches(self, events: Sequence[Event], size: int) -> None:
        for start in range(0, len(events), size):
            batch = events[start:start + size]
            try:
                await self.applier.apply_batch(batch)
            except Exception:
                self.batches_failed += 1
                await self.one_by_one(batch)

    def dead_ids(self) -> list[str]:
        return sorted(event_id or "" for event_id, _ in self.dead)


async def processed_ids(session: AsyncSession, subscription: Subscription) -> list[str]:
    """The ids of the events the subscription's consumer marked processed, in order."""
    table = subscription.tables.processed_events
    return list((await session.execute(
        select(table.c.event_id).where(table.c.consumer == subscription.consumer)
        .order_by(table.c.event_id))).scalars())


async def applied_one_by_one(database_url: str, subscription: Subscription,
                             events: Sequence[Event]) -> Applied:
    """``events`` applied one at a time to the database at ``database_url``."""
    async with Database.opened(database_url, pool_size=2) as database:
        single = Applied(database, subscription)
        await single.one_by_one(events)
    return single
