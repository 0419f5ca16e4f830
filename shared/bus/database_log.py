"""The database-log bus: without Kafka, the outbox tables are the log and are read by position.

The position moves in the same transaction as the effect, so a restart resumes exactly where
the last commit left off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Mapping

from sqlalchemy import Text, cast, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.applier import (
    TRANSIENT,
    AlsoInTransaction,
    Applier,
    RetryPolicy,
    Subscription,
)
from shared.db import Database
from shared.events import Event, MalformedEvent
from shared.outbox import sequence as outbox_sequence
from shared.retry import forever
from shared.tables import EventTables
from shared.wakeup import Wakeup

logger = logging.getLogger(__name__)

BATCH_LINGER_SECONDS = 0.05


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

    async def position(self, session: AsyncSession, topic: str) -> int:
        """Where this consumer stands in ``topic``'s log.

        No row lock: the read's transaction ends before the batch is applied. Two runners of one
        consumer reading the same position both try the batch; the processed-event table lets
        only one apply each event, and ``greatest`` keeps the position from moving back.
        """
        positions = self.subscription.tables.log_positions
        key = {"consumer": self.subscription.consumer, "log": topic}
        await session.execute(
            pg_insert(positions).values(**key, position=0).on_conflict_do_nothing()
        )
        row = await session.execute(
            select(positions.c.position)
            .where(positions.c.consumer == key["consumer"], positions.c.log == topic)
        )
        return int(row.scalar_one())

    def _mover(self, topic: str, position: int) -> AlsoInTransaction:
        positions = self.subscription.tables.log_positions

        async def move(session: AsyncSession) -> None:
            await session.execute(
                update(positions)
                .where(positions.c.consumer == self.subscription.consumer,
                       positions.c.log == topic)
                .values(position=func.greatest(positions.c.position, position))
            )
        return move

    async def step(self, topic: str) -> int:
        outbox = self.logs[topic].outbox
        async with self.database.transaction() as session:
            await outbox_sequence(session, self.logs[topic])
            start = await self.position(session, topic)
            rows = (await session.execute(
                # As text: read by ``Event.read`` once, not decoded by the driver first.
                select(outbox.c.position, cast(outbox.c.envelope, Text), outbox.c.trace_context)
                .where(outbox.c.position > start)
                .order_by(outbox.c.position)
                .limit(self.batch_size)
            )).all()
        if not rows:
            return 0
        events = [(int(position), envelope, trace) for position, envelope, trace in rows]
        try:
            await self.applier.apply_batch(
                [dataclasses.replace(Event.read(envelope), trace=trace)
                 for _, envelope, trace in events],
                self._mover(topic, events[-1][0]),
            )
        except Exception:
            for position, envelope, trace in events:
                await self._apply_one(topic, position, envelope, trace)
        return len(events)

    async def _apply_one(self, topic: str, position: int, record: str,
                         trace: dict[str, str] | None = None) -> None:
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
