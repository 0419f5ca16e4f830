"""Consumers: at-least-once delivery made exactly-once in effect by the processed-event table.

Two implementations read the same envelopes and call the same handlers:
``KafkaConsumerRunner`` (offsets committed only after the database commit) and
``DatabaseLogRunner`` (the outbox tables are the log; the position moves in the same transaction
as the effect).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import tracing
from shared.db import Database
from shared.events import Event, MalformedEvent
from shared.kafka_client import KafkaPublisher
from shared.outbox import sequence as outbox_sequence
from shared.tables import EventTables
from shared.wakeup import Wakeup

logger = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Event], Awaitable[None]]

TRANSIENT = (OperationalError, InterfaceError, OSError, ConnectionError, TimeoutError)


class RetryLater(Exception):
    """The event cannot be applied yet (for example its case is not known yet)."""


class Parked(Exception):
    """Raised instead of waiting, when the caller can move on and come back to the event."""


class UnknownEventType(Exception):
    """A well-formed event of a type this consumer does not handle."""


@dataclass(frozen=True)
class Subscription:
    consumer: str
    topics: tuple[str, ...]
    handler: Handler
    tables: EventTables


@dataclass
class RetryPolicy:
    attempts: int = 3
    retry_later_seconds: float = 60.0
    pause: float = 0.2


async def apply_once(session: AsyncSession, subscription: Subscription, event: Event) -> bool:
    """Applies ``event`` unless this consumer already did; True when it was applied now."""
    processed = subscription.tables.processed_events
    claimed = await session.execute(
        pg_insert(processed)
        .values(consumer=subscription.consumer, event_id=event.id)
        .on_conflict_do_nothing()
        .returning(processed.c.event_id)
    )
    if claimed.first() is None:
        return False
    # What the handler writes to its own outbox continues the trace of the event.
    with tracing.continued(event.trace):
        await subscription.handler(session, event)
    return True


DeadLetter = Callable[[Event | None, str], Awaitable[None]]


@dataclass
class Applier:
    """Applies events one transaction at a time, with retries, and dead-letters what cannot be."""

    database: Database
    subscription: Subscription
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    applied: int = 0
    dead_lettered: int = 0

    async def apply_batch(self, events: Sequence[Event],
                          extra: Callable[[AsyncSession], Awaitable[None]] | None = None) -> None:
        """All in one transaction; raises if any event fails (the caller then goes one by one)."""
        async with self.database.transaction() as session:
            count = 0
            for event in events:
                count += await apply_once(session, self.subscription, event)
            if extra is not None:
                await extra(session)
        self.applied += count

    async def apply_single(self, event: Event, dead_letter: DeadLetter,
                           extra: Callable[[AsyncSession], Awaitable[None]] | None = None,
                           *, parkable: bool = False) -> None:
        """Applies one event with retries; ``parkable`` raises ``Parked`` on ``RetryLater``."""
        failures = 0
        waited = 0.0
        backoff = self.policy.pause
        while True:
            try:
                await self.apply_batch([event], extra)
                return
            except asyncio.CancelledError:
                raise
            except RetryLater as exc:
                if parkable:
                    raise Parked(str(exc)) from exc
                if waited >= self.policy.retry_later_seconds:
                    await self._dead(event, f"not applicable after {waited:.0f}s: {exc}",
                                     dead_letter)
                    return
            except UnknownEventType as exc:
                await self._dead(event, f"unknown event type: {exc}", dead_letter)
                return
            except TRANSIENT as exc:
                logger.warning("%s: backing service unavailable (%s); retrying",
                               self.subscription.consumer, type(exc).__name__)
            except Exception as exc:
                failures += 1
                logger.warning("%s: event %s failed (%d/%d): %s: %s",
                               self.subscription.consumer, event.id, failures,
                               self.policy.attempts, type(exc).__name__, exc)
                if failures >= self.policy.attempts:
                    await self._dead(event, f"{type(exc).__name__}: {exc}", dead_letter)
                    return
            await asyncio.sleep(backoff)
            waited += backoff
            backoff = min(backoff * 2, 5.0)

    async def _dead(self, event: Event | None, error: str, dead_letter: DeadLetter) -> None:
        while True:
            try:
                await dead_letter(event, error)
                self.dead_lettered += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("dead-lettering failed (%s); retrying", exc)
                await asyncio.sleep(1.0)


class KafkaConsumerRunner:
    def __init__(self, subscription: Subscription, database: Database, *,
                 bootstrap_servers: str, publisher: KafkaPublisher,
                 policy: RetryPolicy | None = None, max_records: int = 500,
                 group_prefix: str = "") -> None:
        self.subscription = subscription
        self.group_prefix = group_prefix
        self.database = database
        self.bootstrap_servers = bootstrap_servers
        self.publisher = publisher
        self.applier = Applier(database, subscription, policy or RetryPolicy())
        self.max_records = max_records
        self.consumer: AIOKafkaConsumer | None = None
        # A partition whose next event cannot be applied yet is paused and read again later,
        # so other partitions (where the event it waits for may be) keep flowing.
        self._parked_since: dict[TopicPartition, tuple[int, float]] = {}
        self._resume_at: dict[TopicPartition, float] = {}
        self.committed: dict[TopicPartition, int] = {}

    def lag(self) -> dict[tuple[str, int], int]:
        """Records on the broker past this group's last commit, per assigned partition."""
        consumer = self.consumer
        if consumer is None:
            return {}
        lag: dict[tuple[str, int], int] = {}
        for partition in consumer.assignment():
            end = consumer.highwater(partition)
            if end is not None and partition in self.committed:
                lag[(partition.topic, partition.partition)] = max(
                    int(end) - self.committed[partition], 0)
        return lag

    def dlq_topic(self, topic: str) -> str:
        return f"{topic}.dlq.{self.subscription.consumer}"

    async def _start(self) -> AIOKafkaConsumer:
        backoff = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                *(self.publisher.topic(t) for t in self.subscription.topics),
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_prefix + self.subscription.consumer,
                client_id=self.subscription.consumer,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.max_records,
            )
            try:
                await consumer.start()
                return consumer
            except asyncio.CancelledError:
                await consumer.stop()
                raise
            except Exception as exc:
                await consumer.stop()
                logger.warning("%s: cannot reach Kafka (%s); retrying",
                               self.subscription.consumer, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def run(self) -> None:
        self.consumer = await self._start()
        try:
            while True:
                self._resume_due(self.consumer)
                batches = await self.consumer.getmany(timeout_ms=200,
                                                      max_records=self.max_records)
                for partition, records in batches.items():
                    if partition not in self.consumer.assignment():
                        continue  # taken away by a rebalance since it was fetched
                    if partition in self._resume_at:
                        continue  # parked: these records are fetched again after the pause
                    next_offset = await self.process(partition, records)
                    await self._commit(self.consumer, partition, next_offset)
        finally:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer, partition: TopicPartition,
                      offset: int) -> None:
        """Commits, unless a rebalance moved the partition to another consumer meanwhile.

        Its new owner then reads again from the last commit and the processed-event table skips
        what was applied here; failing instead would restart this consumer, rebalance the group
        again and could keep every instance restarting.
        """
        try:
            await consumer.commit({partition: offset})
            self.committed[partition] = offset
        except (CommitFailedError, IllegalStateError) as exc:
            logger.info("%s: %s:%d was reassigned before its commit (%s)",
                        self.subscription.consumer, partition.topic, partition.partition,
                        type(exc).__name__)

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        for partition, when in list(self._resume_at.items()):
            if when <= now:
                del self._resume_at[partition]
                if partition in consumer.assignment():
                    consumer.resume(partition)

    def _park(self, partition: TopicPartition, offset: int) -> bool:
        """Pauses the partition at ``offset``; False once it has waited long enough."""
        now = time.monotonic()
        since = self._parked_since.get(partition)
        if since is None or since[0] != offset:
            self._parked_since[partition] = since = (offset, now)
        if now - since[1] >= self.applier.policy.retry_later_seconds:
            del self._parked_since[partition]
            return False
        assert self.consumer is not None
        self.consumer.seek(partition, offset)
        self.consumer.pause(partition)
        self._resume_at[partition] = now + self.applier.policy.pause
        return True

    async def process(self, partition: TopicPartition,
                      records: Sequence[ConsumerRecord[bytes, bytes]]) -> int:
        """Applies ``records`` in order; returns the offset to commit next."""
        parsed: list[tuple[ConsumerRecord[bytes, bytes], Event | MalformedEvent]] = []
        for record in records:
            try:
                if record.value is None:
                    raise MalformedEvent("empty record")
                parsed.append((record, dataclasses.replace(
                    Event.from_json(record.value),
                    trace=tracing.from_kafka_headers(record.headers))))
            except MalformedEvent as exc:
                parsed.append((record, exc))
        try:
            await self.applier.apply_batch([e for _, e in parsed if isinstance(e, Event)])
        except asyncio.CancelledError:
            raise
        except Exception:
            return await self._one_by_one(partition, parsed)
        for record, outcome in parsed:
            if isinstance(outcome, MalformedEvent):
                await self.applier._dead(None, str(outcome), self._dead_letter_for(record))
        self._parked_since.pop(partition, None)
        return int(records[-1].offset) + 1

    async def _one_by_one(self, partition: TopicPartition,
                          parsed: Sequence[tuple[ConsumerRecord[bytes, bytes],
                                                 Event | MalformedEvent]]) -> int:
        for record, outcome in parsed:
            dead_letter = self._dead_letter_for(record)
            if isinstance(outcome, MalformedEvent):
                await self.applier._dead(None, str(outcome), dead_letter)
                continue
            try:
                await self.applier.apply_single(outcome, dead_letter, parkable=True)
            except Parked as exc:
                if self._park(partition, record.offset):
                    return int(record.offset)
                await self.applier._dead(outcome, f"not applicable in time: {exc}", dead_letter)
        self._parked_since.pop(partition, None)
        return int(parsed[-1][0].offset) + 1

    def _dead_letter_for(self, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
        async def dead_letter(event: Event | None, error: str) -> None:
            headers = [
                *[(k, v) for k, v in (record.headers or ()) if k != "error"],
                ("error", error.encode()[:4000]),
                ("original-topic", record.topic.encode()),
                ("original-partition", str(record.partition).encode()),
                ("original-offset", str(record.offset).encode()),
                ("consumer", self.subscription.consumer.encode()),
            ]
            await self.publisher.publish_raw(self.dlq_topic(record.topic), value=record.value,
                                             key=record.key, headers=headers)
            logger.error("%s: record %s:%d@%d dead-lettered: %s", self.subscription.consumer,
                         record.topic, record.partition, record.offset, error)
        return dead_letter


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
                try:
                    moved += await self.step(topic)
                except asyncio.CancelledError:
                    raise
                except TRANSIENT as exc:
                    logger.warning("%s: database unavailable (%s)", self.subscription.consumer,
                                   type(exc).__name__)
                    await asyncio.sleep(1.0)
            if not moved:
                if self.wakeup is not None and self.woken is not None:
                    await self.wakeup.wait(self.woken, self.poll_seconds)
                else:
                    await asyncio.sleep(self.poll_seconds)

    async def position(self, session: AsyncSession, topic: str) -> int:
        positions = self.subscription.tables.log_positions
        key = {"consumer": self.subscription.consumer, "log": topic}
        await session.execute(
            pg_insert(positions).values(**key, position=0).on_conflict_do_nothing()
        )
        row = await session.execute(
            select(positions.c.position)
            .where(positions.c.consumer == key["consumer"], positions.c.log == topic)
            .with_for_update()
        )
        return int(row.scalar_one())

    def _mover(self, topic: str, position: int) -> Callable[[AsyncSession], Awaitable[None]]:
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
                select(outbox.c.position, outbox.c.envelope, outbox.c.trace_context)
                .where(outbox.c.position > start)
                .order_by(outbox.c.position)
                .limit(self.batch_size)
            )).all()
        if not rows:
            return 0
        events = [(int(r.position), r.envelope, r.trace_context) for r in rows]
        try:
            await self.applier.apply_batch(
                [dataclasses.replace(Event.from_json(json.dumps(envelope)), trace=trace)
                 for _, envelope, trace in events],
                self._mover(topic, events[-1][0]),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            for position, envelope, trace in events:
                await self._apply_one(topic, position, envelope, trace)
        return len(events)

    async def _apply_one(self, topic: str, position: int, envelope: object,
                         trace: dict[str, str] | None = None) -> None:
        record = json.dumps(envelope, ensure_ascii=False)
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
            await self.applier._dead(None, str(exc), dead_letter)
            return
        await self.applier.apply_single(event, dead_letter, move)
