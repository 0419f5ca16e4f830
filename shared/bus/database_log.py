"""The database-log bus: without Kafka, the outbox tables are the log and are read by position.

The position moves in the same transaction as the effect, so a restart resumes exactly where
the last commit left off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections.abc import Mapping

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.applier import (
    TRANSIENT,
    AlsoInTransaction,
    Applier,
    RetryPolicy,
    Subscription,
)
from shared.db import Database, on_driver
from shared.events import Event, MalformedEvent
from shared.outbox import sequence_on_driver
from shared.retry import forever
from shared.tables import EventTables
from shared.wakeup import Wakeup

logger = logging.getLogger(__name__)

BATCH_LINGER_SECONDS = 0.05


@functools.cache
def _read_sql(consumer_schema: str, log_schema: str) -> str:
    # No row when the consumer has no position yet; one of NULLs when nothing is new. The
    # envelopes as text: read by ``Event.read`` once, not decoded by the driver first.
    return (f"SELECT o.position, o.envelope::text, o.trace_context::text "
            f"FROM {consumer_schema}.log_positions AS p LEFT JOIN LATERAL ("
            f"SELECT position, envelope, trace_context FROM {log_schema}.outbox "
            f"WHERE position > p.position ORDER BY position LIMIT $3) AS o ON true "
            f"WHERE p.consumer = $1 AND p.log = $2 ORDER BY o.position")


@functools.cache
def _start_sql(consumer_schema: str) -> str:
    return (f"INSERT INTO {consumer_schema}.log_positions (consumer, log, position) "
            f"VALUES ($1, $2, 0) ON CONFLICT DO NOTHING")


@functools.cache
def _move_sql(consumer_schema: str) -> str:
    return (f"UPDATE {consumer_schema}.log_positions SET position = greatest(position, $3) "
            f"WHERE consumer = $1 AND log = $2")


class DatabaseLogRunner:
    """Follows outbox tables by position; the position moves with the effect, in one commit."""

    def __init__(self, subscription: Subscription, database: Database,
                 logs: Mapping[str, EventTables], *, poll_seconds: float = 0.2,
                 batch_size: int = 500, policy: RetryPolicy | None = None,
                 wakeup: Wakeup | None = None) -> None:
        self.subscription = subscription
        self.wakeup = wakeup
        self.woken = wakeup.subscribe(*{logs[t].schema for t in subscription.topics}) \
            if wakeup else None
        self.database = database
        self.logs = logs
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.applier = Applier(database, subscription, policy or RetryPolicy())

    async def run(self) -> None:
        while True:
            if self.woken is not None:
                self.woken.clear()  # set again by any commit from here on: none is missed
            moved = 0
            for topic in self.subscription.topics:
                moved += await forever(functools.partial(self.step, topic), on=TRANSIENT,
                                       what=f"{self.subscription.consumer}: reading {topic}")
            if not moved:
                if self.wakeup is not None and self.woken is not None:
                    await self.wakeup.wait(self.woken, self.poll_seconds)
                else:
                    await asyncio.sleep(self.poll_seconds)
            elif moved < self.batch_size:
                # Under a steady stream of commits, reading again at once would apply events a
                # few at a time, each few costing two transactions; a moment's wait gathers them.
                await asyncio.sleep(BATCH_LINGER_SECONDS)

    async def _read(self, driver: asyncpg.Connection, topic: str
                    ) -> list[tuple[int, str, Mapping[str, str] | None]]:
        """The next events of ``topic``'s log past this consumer's position, in one statement
        on the driver (the position's row made first, when there is none yet).

        No row lock: the read's transaction ends before the batch is applied. Two runners of one
        consumer reading the same position both try the batch; the processed-event table lets
        only one apply each event, and ``greatest`` keeps the position from moving back.
        """
        read = _read_sql(self.subscription.tables.log_positions.schema, self.logs[topic].schema)
        key = (self.subscription.consumer, topic)
        rows = await driver.fetch(read, *key, self.batch_size)
        if not rows:  # this consumer's first read of the log
            await driver.execute(_start_sql(self.subscription.tables.log_positions.schema),
                                 *key)
            rows = await driver.fetch(read, *key, self.batch_size)
        return [(int(position), envelope, json.loads(trace) if trace else None)
                for position, envelope, trace in rows if position is not None]

    def _mover(self, topic: str, position: int) -> AlsoInTransaction:
        sql = _move_sql(self.subscription.tables.log_positions.schema)

        async def move(session: AsyncSession) -> None:
            async with on_driver(session) as driver:
                await driver.execute(sql, self.subscription.consumer, topic, position)
        return move

    async def step(self, topic: str) -> int:
        # A transaction of the driver's own: no session is needed to read, and it costs a
        # fraction of one (most reads are of a log that has nothing new).
        async with self.database.autocommit() as driver, driver.transaction():
            await sequence_on_driver(driver, self.logs[topic])
            events = await self._read(driver, topic)
        if not events:
            return 0
        try:
            await self.applier.apply_batch(
                [Event.read(envelope, trace) for _, envelope, trace in events],
                self._mover(topic, events[-1][0]),
            )
        except Exception:
            for position, envelope, trace in events:
                await self._apply_one(topic, position, envelope, trace)
        return len(events)

    async def _apply_one(self, topic: str, position: int, record: str,
                         trace: Mapping[str, str] | None = None) -> None:
        move = self._mover(topic, position)

        async def dead_letter(event: Event | None, error: str) -> None:
            dead = self.subscription.tables.dead_letters
            async with self.database.transaction() as session:
                await session.execute(dead.insert().values(
                    consumer=self.subscription.consumer, log=topic,
                    event_id=event.id if event else None, record=record, error=error,
                ))
                await move(session)
            logger.error("%s: %s@%d dead-lettered: %s", self.subscription.consumer, topic,
                         position, error)

        try:
            event = dataclasses.replace(Event.from_json(record), trace=trace)
        except MalformedEvent as exc:
            await self.applier.dead(None, str(exc), dead_letter)
            return
        await self.applier.apply_single(event, dead_letter, move)
