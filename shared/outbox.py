"""Writing events with the change they describe, and relaying them to Kafka."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.events import Event
from shared.kafka_client import KafkaPublisher
from shared.tables import EventTables

logger = logging.getLogger(__name__)


async def append(session: AsyncSession, tables: EventTables, topic: str, event: Event) -> None:
    """Adds ``event`` to the outbox in the caller's transaction.

    The transaction-scoped advisory lock makes positions become visible in commit order: a
    transaction takes its position only after the previous writer committed, so a reader that
    follows ``position > last`` never skips a row that commits late. It is held only from here to
    the commit, so callers append as the last step of their transaction.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
        {"name": f"aduan.outbox.{tables.schema}"},
    )
    await session.execute(
        tables.outbox.insert().values(
            event_id=event.id, topic=topic, key=event.key, envelope=event.envelope()
        )
    )


async def unpublished_count(session: AsyncSession, tables: EventTables) -> int:
    query = select(func.count()).select_from(tables.outbox).where(
        tables.outbox.c.published_at.is_(None)
    )
    return int((await session.execute(query)).scalar_one())


class OutboxRelay:
    """Publishes outbox rows in position order and stamps them only once Kafka acknowledged.

    Relays of one outbox (one per instance of a service) take turns: were two to publish side by
    side, one key's later events could reach the topic before its earlier ones.
    """

    def __init__(self, database: Database, tables: EventTables, publisher: KafkaPublisher,
                 *, batch_size: int = 500, poll_seconds: float = 0.2) -> None:
        self.database = database
        self.tables = tables
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.published = 0

    async def publish_batch(self) -> int:
        outbox = self.tables.outbox
        async with self.database.transaction() as session:
            turn = await session.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtext(:name))"),
                {"name": f"aduan.relay.{self.tables.schema}"},
            )
            if not turn.scalar_one():
                return 0
            rows = (await session.execute(
                select(outbox.c.position, outbox.c.topic, outbox.c.envelope)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.position)
                .limit(self.batch_size)
            )).all()
            if not rows:
                return 0
            await self.publisher.publish_many([(r.topic, r.envelope) for r in rows])
            await session.execute(
                update(outbox)
                .where(outbox.c.position.in_([r.position for r in rows]))
                .values(published_at=datetime.now(UTC))
            )
        self.published += len(rows)
        return len(rows)

    async def run(self) -> None:
        backoff = self.poll_seconds
        while True:
            try:
                sent = await self.publish_batch()
                backoff = self.poll_seconds
                if sent < self.batch_size:
                    await asyncio.sleep(self.poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("outbox relay for %s could not publish: %s: %s",
                               self.tables.schema, type(exc).__name__, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def drain(self, within: float = 10.0) -> None:
        """Publishes what is pending (used on shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:
                if await self.publish_batch() == 0:
                    return
            except Exception as exc:
                logger.warning("outbox drain stopped: %s", exc)
                return
