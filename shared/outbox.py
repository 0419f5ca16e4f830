"""Writing events with the change they describe, and relaying them to Kafka."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import tracing
from shared.db import Database, announce_after_commit, on_driver
from shared.events import Event
from shared.kafka_client import KafkaPublisher
from shared.retry import forever
from shared.tables import EventTables
from shared.wakeup import Wakeup

logger = logging.getLogger(__name__)


COLUMNS = "event_id, topic, key, envelope, trace_context"
OutboxRow = tuple[str, str, str, str, str | None]


def row(topic: str, event: Event, carrier: Mapping[str, str] | None = None) -> OutboxRow:
    """The outbox row of ``event``, with the trace context it is written under (``carrier``,
    by default the current one); the envelope goes as the JSON text it was encoded to."""
    return _row(topic, event, carrier if carrier is not None else tracing.current_carrier())


def _row(topic: str, event: Event, carrier: Mapping[str, str] | None) -> OutboxRow:
    return encoded_row(event.id, topic, event.key, event.to_json().decode(), carrier)


def encoded_row(event_id: str, topic: str, key: str, envelope: str,
                carrier: Mapping[str, str] | None) -> OutboxRow:
    """The outbox row of an event already written as JSON text (``envelope``), with the trace
    context it is written under."""
    return (event_id, topic, key, envelope, json.dumps(carrier) if carrier else None)


def json_rows(rows: Sequence[OutboxRow]) -> str:
    """``rows`` as one JSON array of objects (for ``jsonb_populate_recordset``), the envelopes
    and trace contexts embedded as the JSON they already are."""
    return "[" + ",".join(
        f'{{"event_id":{json.dumps(event_id)},"topic":{json.dumps(topic)},'
        f'"key":{json.dumps(key)},"envelope":{envelope},"trace_context":{carrier or "null"}}}'
        for event_id, topic, key, envelope, carrier in rows) + "]"


async def append(session: AsyncSession, tables: EventTables, topic: str, event: Event) -> None:
    """Adds ``event`` to the outbox in the caller's transaction.

    It takes no lock: writers commit side by side. The row has no log position yet;
    ``sequence`` gives it one once it is committed. Sent on the driver (``on_driver``).
    """
    await append_many(session, tables, topic, [(event, tracing.current_carrier())])


async def append_many(session: AsyncSession, tables: EventTables, topic: str,
                      events: Sequence[tuple[Event, Mapping[str, str] | None]]) -> None:
    """``append`` for many events in one statement, each with the trace context it continues
    (a consumer applying a batch writes one event per event it applied)."""
    if not events:
        return
    async with on_driver(session) as driver:
        await driver.execute(_insert_many_sql(tables.schema), json_rows(
            [_row(topic, event, carrier) for event, carrier in events]))
    announce_after_commit(session, tables.schema)


@functools.cache
def _insert_many_sql(schema: str) -> str:
    return (f"INSERT INTO {schema}.outbox ({COLUMNS}) SELECT {COLUMNS} "
            f"FROM jsonb_populate_recordset(NULL::{schema}.outbox, $1::jsonb)")


async def sequence(session: AsyncSession, tables: EventTables, *, limit: int = 5000) -> int:
    """Gives committed rows without a position the next positions of the log; returns how many.

    Why after commit: a position drawn while writing (an identity) becomes visible in commit
    order, not in drawing order, so a reader following ``position > last`` would skip a row
    whose transaction drew its position early and committed late. Sequencers take turns (a
    transaction-scoped lock, taken by readers, never by writers), so each sees every position
    given before it, and the positions it gives become visible at once, in order, after all
    earlier ones; the turn is held only for the reader's short read transaction. Two events of
    one key keep their order: the later one was written after the
    earlier one committed, so a sequencer that sees the later one sees the earlier one too and
    ``id`` orders them. Positions have no gaps. Called in the reader's transaction.
    """
    # Waiting for the turn (rather than skipping it) matters: a reader that skipped would read
    # before the other sequencer committed, find nothing, and sleep through the only wake-up.
    # On the driver: every reader runs this for every log it reads, most often finding nothing.
    async with on_driver(session) as driver:
        return await sequence_on_driver(driver, tables, limit=limit)


async def sequence_on_driver(driver: asyncpg.Connection, tables: EventTables, *,
                             limit: int = 5000) -> int:
    """``sequence`` in a transaction begun on the driver."""
    await driver.execute(_SEQUENCER_TURN_SQL, f"aduan.sequencer.{tables.schema}")
    status = await driver.execute(_sequence_sql(tables.schema), limit)
    return int(status.rsplit(" ", 1)[-1])


_SEQUENCER_TURN_SQL = "SELECT pg_advisory_xact_lock(hashtext($1))"


@functools.cache
def _sequence_sql(schema: str) -> str:
    return (f"WITH pending AS (SELECT id, row_number() OVER (ORDER BY id) AS n "
            f"FROM {schema}.outbox WHERE position IS NULL ORDER BY id LIMIT $1) "
            f"UPDATE {schema}.outbox AS o SET position = (SELECT coalesce(max(position), 0) "
            f"FROM {schema}.outbox) + pending.n FROM pending WHERE o.id = pending.id")


async def unpublished_count(session: AsyncSession, tables: EventTables) -> int:
    query = select(func.count()).select_from(tables.outbox).where(
        tables.outbox.c.published_at.is_(None)
    )
    return int((await session.execute(query)).scalar_one())


_TURN_SQL = "SELECT pg_try_advisory_xact_lock(hashtext($1))"
RELAY_LINGER_SECONDS = 0.05


@functools.cache
def _unsent_sql(schema: str) -> str:
    """The next unsent rows. Read by its own statement after the turn is taken, never in the
    statement that takes it: a statement's snapshot is taken before it runs, so a read that
    took the turn itself could see the rows the previous relay stamped, committed and let go
    of the turn for in between as unsent, and send them again."""
    return (f"SELECT id, topic, key, envelope::text, trace_context::text FROM {schema}.outbox "
            f"WHERE published_at IS NULL ORDER BY id LIMIT $1")


@functools.cache
def _stamp_sql(schema: str) -> str:
    return f"UPDATE {schema}.outbox SET published_at = $2 WHERE id = ANY($1::bigint[])"


class OutboxRelay:
    """Publishes outbox rows in the order they were written and stamps them once Kafka acknowledged.

    Rows of one key are written one after the other's commit, so reading committed rows by
    ``id`` keeps each key's order; rows of different keys may go out in any order.

    Relays of one outbox (one per instance of a service) take turns: were two to publish side by
    side, one key's later events could reach the topic before its earlier ones.
    """

    def __init__(self, database: Database, tables: EventTables, publisher: KafkaPublisher,
                 *, batch_size: int = 500, poll_seconds: float = 0.2,
                 wakeup: Wakeup | None = None) -> None:
        self.database = database
        self.wakeup = wakeup
        self.woken = wakeup.subscribe(tables.schema) if wakeup else None
        self.tables = tables
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds

    async def publish_batch(self) -> int:
        """Publishes the next batch of unsent rows and stamps them, in one short transaction
        begun on the driver: three statements, whatever the batch's size. The envelopes are
        read as the JSON text they are stored as and sent as such, never decoded and encoded
        again."""
        schema = self.tables.schema
        async with self.database.autocommit() as driver, driver.transaction():
            if not await driver.fetchval(_TURN_SQL, f"aduan.relay.{schema}"):
                return 0
            rows = await driver.fetch(_unsent_sql(schema), self.batch_size)
            if not rows:
                return 0
            await self.publisher.publish_many([
                (topic, key.encode(), envelope.encode(),
                 tracing.kafka_headers(json.loads(carrier) if carrier else None))
                for _, topic, key, envelope, carrier in rows])
            await driver.execute(_stamp_sql(schema), [row[0] for row in rows],
                                 datetime.now(UTC))
        return len(rows)

    async def run(self) -> None:
        while True:
            if self.woken is not None:
                self.woken.clear()
            sent = await forever(self.publish_batch,
                                 what=f"outbox relay for {self.tables.schema}")
            if not sent:
                await self._idle()
            elif sent < self.batch_size:
                # Under a steady stream of commits, going again at once would send rows a few
                # at a time, each few costing a transaction and a produce request; a moment's
                # wait gathers them (what came meanwhile is sent without waiting for a wake-up).
                # 50 ms: at 300 complaints a second, batches of ~15 rows instead of ~6, each
                # costing the relay, PostgreSQL and the broker the same whatever its size, for
                # at most 50 ms more on the way to the topic, and only under a steady stream.
                await asyncio.sleep(RELAY_LINGER_SECONDS)

    async def _idle(self) -> None:
        if self.wakeup is not None and self.woken is not None:
            await self.wakeup.wait(self.woken, self.poll_seconds)
        else:
            await asyncio.sleep(self.poll_seconds)

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
