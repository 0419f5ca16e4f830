"""The Kafka bus: offsets are committed only after the effects they produced are committed.

They are committed every ``commit_interval_ms`` (and at once after a dead letter, and when the
consumer loses a partition or stops), not after every batch: a commit costs the broker a write
and the consumer a round trip it waits for, and under a steady stream a batch holds only a few
records. What a crash leaves uncommitted is read again by the partition's next owner, and the
processed-event table skips every event of it that was applied: reading again has no effect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from shared import tracing
from shared.bus.applier import Applier, DeadLetter, Parked, RetryPolicy, Subscription
from shared.db import Database
from shared.events import Event, MalformedEvent
from shared.kafka_client import KafkaPublisher
from shared.retry import forever

logger = logging.getLogger(__name__)


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """A partition taken away by a rebalance takes its parking state with it: its next owner
    reads it from the last commit, and were it assigned here again it would start afresh."""

    def __init__(self, runner: KafkaConsumerRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.runner.revoked |= revoked
        # Still this consumer's until the group is joined again: what it applied is committed.
        await self.runner.commit_pending(revoked)
        for partition in revoked:
            self.runner.parked_since.pop(partition, None)
            self.runner.resume_at.pop(partition, None)
            self.runner.committed.pop(partition, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


class KafkaConsumerRunner:
    """Reads a consumer group's partitions and applies each batch in one transaction."""

    def __init__(self, subscription: Subscription, database: Database, *,
                 bootstrap_servers: str, publisher: KafkaPublisher,
                 policy: RetryPolicy | None = None, max_records: int = 500,
                 group_prefix: str = "", fetch_max_wait_ms: int = 100,
                 fetch_min_bytes: int = 1, commit_interval_ms: int = 0) -> None:
        self.subscription = subscription
        self.group_prefix = group_prefix
        self.database = database
        self.bootstrap_servers = bootstrap_servers
        self.publisher = publisher
        self.applier = Applier(database, subscription, policy or RetryPolicy())
        self.max_records = max_records
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.consumer: AIOKafkaConsumer | None = None
        # A partition whose next event cannot be applied yet is paused and read again later,
        # so other partitions (where the event it waits for may be) keep flowing.
        self.parked_since: dict[TopicPartition, tuple[int, float]] = {}
        self.resume_at: dict[TopicPartition, float] = {}
        self.committed: dict[TopicPartition, int] = {}
        # Offsets whose batches are committed in the database but not yet to Kafka.
        self.commit_interval = commit_interval_ms / 1000
        self.pending: dict[TopicPartition, int] = {}
        # Partitions revoked while a batch was being applied (``run``).
        self.revoked: set[TopicPartition] = set()
        self._last_commit = time.monotonic()

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
        async def started() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_prefix + self.subscription.consumer,
                client_id=self.subscription.consumer,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.max_records,
                fetch_max_wait_ms=self.fetch_max_wait_ms,
                fetch_min_bytes=self.fetch_min_bytes,
            )
            consumer.subscribe([self.publisher.topic(t) for t in self.subscription.topics],
                               listener=_ForgetRevoked(self))
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            return consumer

        return await forever(started, what=f"{self.subscription.consumer}: reaching Kafka")

    async def run(self) -> None:
        self.consumer = await self._start()
        try:
            while True:
                self._resume_due(self.consumer)
                batches = await self.consumer.getmany(timeout_ms=200,
                                                      max_records=self.max_records)
                assigned = self.consumer.assignment()
                # Not taken away by a rebalance since fetched, and not parked (parked records
                # are fetched again after the pause).
                ready = {partition: records for partition, records in batches.items()
                         if partition in assigned and partition not in self.resume_at}
                dead_before = self.applier.dead_lettered
                if ready:
                    self.revoked = set()
                    offsets = await self.process_all(ready)
                    # A partition revoked meanwhile is read again by its next owner, who skips
                    # what was applied here; committed later, its offset could move the group
                    # back behind what that owner committed since.
                    self.pending.update({partition: offset for partition, offset in offsets.items()
                                         if partition not in self.revoked})
                # A dead letter would be sent again were its record read again: committed now.
                if (self.applier.dead_lettered != dead_before
                        or time.monotonic() - self._last_commit >= self.commit_interval):
                    await self.commit_pending()
        finally:
            consumer, self.consumer = self.consumer, None
            try:
                # Best effort: what is not committed here is read again and skipped.
                async with asyncio.timeout(5):
                    await self.commit_pending(consumer=consumer)
            except (Exception, asyncio.CancelledError) as exc:
                logger.info("%s: offsets not committed on stop (%s)",
                            self.subscription.consumer, type(exc).__name__)
            finally:
                await consumer.stop()

    async def commit_pending(self, partitions: Collection[TopicPartition] | None = None, *,
                             consumer: AIOKafkaConsumer | None = None) -> None:
        """Commits the pending offsets (of ``partitions``, by default all of them) of the
        partitions still assigned; one commit naming a partition no longer assigned would fail
        for all of them."""
        consumer = consumer or self.consumer
        offsets = {partition: offset for partition, offset in self.pending.items()
                   if partitions is None or partition in partitions}
        for partition in offsets:
            del self.pending[partition]
        self._last_commit = time.monotonic()
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {partition: offset for partition, offset in offsets.items()
                   if partition in assigned}
        if offsets:
            await self._commit(consumer, offsets)

    async def _commit(self, consumer: AIOKafkaConsumer,
                      offsets: dict[TopicPartition, int]) -> None:
        """Commits, unless a rebalance moved a partition to another consumer meanwhile.

        Its new owner then reads again from the last commit and the processed-event table skips
        what was applied here; failing instead would restart this consumer, rebalance the group
        again and could keep every instance restarting.
        """
        try:
            await consumer.commit(offsets)
            self.committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            logger.info("%s: %s reassigned before the commit (%s)", self.subscription.consumer,
                        ", ".join(f"{p.topic}:{p.partition}" for p in offsets),
                        type(exc).__name__)

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        for partition, when in list(self.resume_at.items()):
            if when <= now:
                del self.resume_at[partition]
                if partition in consumer.assignment():
                    consumer.resume(partition)

    def _park(self, partition: TopicPartition, offset: int) -> bool:
        """Pauses the partition at ``offset``; False once it has waited long enough."""
        now = time.monotonic()
        since = self.parked_since.get(partition)
        if since is None or since[0] != offset:
            self.parked_since[partition] = since = (offset, now)
        if now - since[1] >= self.applier.policy.retry_later_seconds:
            del self.parked_since[partition]
            return False
        assert self.consumer is not None
        self.consumer.seek(partition, offset)
        self.consumer.pause(partition)
        self.resume_at[partition] = now + self.applier.policy.pause
        return True

    async def process_all(self, batches: dict[TopicPartition,
                                             Sequence[ConsumerRecord[bytes, bytes]]]
                          ) -> dict[TopicPartition, int]:
        """Applies what one poll fetched from every partition in one transaction; when that
        fails, each partition on its own (``process``). Returns the offsets to commit."""
        parsed = {partition: self._parse(records) for partition, records in batches.items()}
        try:
            await self.applier.apply_batch([event for outcomes in parsed.values()
                                            for _, event in outcomes
                                            if isinstance(event, Event)])
        except Exception:
            return {partition: await self.process(partition, batches[partition])
                    for partition in batches}
        for partition, outcomes in parsed.items():
            await self._dead_letter_malformed(outcomes)
            self.parked_since.pop(partition, None)
        return {partition: int(records[-1].offset) + 1
                for partition, records in batches.items()}

    def _parse(self, records: Sequence[ConsumerRecord[bytes, bytes]]
               ) -> list[tuple[ConsumerRecord[bytes, bytes], Event | MalformedEvent]]:
        parsed: list[tuple[ConsumerRecord[bytes, bytes], Event | MalformedEvent]] = []
        for record in records:
            try:
                if record.value is None:
                    raise MalformedEvent("empty record")
                parsed.append((record, Event.read(
                    record.value, trace=tracing.from_kafka_headers(record.headers))))
            except MalformedEvent as exc:
                parsed.append((record, exc))
        return parsed

    async def _dead_letter_malformed(
            self, parsed: Sequence[tuple[ConsumerRecord[bytes, bytes],
                                         Event | MalformedEvent]]) -> None:
        for record, outcome in parsed:
            if isinstance(outcome, MalformedEvent):
                await self.applier.dead(None, str(outcome), self.dead_letter_for(record))

    async def process(self, partition: TopicPartition,
                      records: Sequence[ConsumerRecord[bytes, bytes]]) -> int:
        """Applies one partition's ``records`` in order; returns the offset to commit next."""
        parsed = self._parse(records)
        try:
            await self.applier.apply_batch([e for _, e in parsed if isinstance(e, Event)])
        except Exception:
            return await self._one_by_one(partition, parsed)
        await self._dead_letter_malformed(parsed)
        self.parked_since.pop(partition, None)
        return int(records[-1].offset) + 1

    async def _one_by_one(self, partition: TopicPartition,
                          parsed: Sequence[tuple[ConsumerRecord[bytes, bytes],
                                                 Event | MalformedEvent]]) -> int:
        for record, outcome in parsed:
            dead_letter = self.dead_letter_for(record)
            if isinstance(outcome, MalformedEvent):
                await self.applier.dead(None, str(outcome), dead_letter)
                continue
            try:
                await self.applier.apply_single(outcome, dead_letter, parkable=True)
            except Parked as exc:
                if self._park(partition, record.offset):
                    return int(record.offset)
                await self.applier.dead(outcome, f"not applicable in time: {exc}", dead_letter)
        self.parked_since.pop(partition, None)
        return int(parsed[-1][0].offset) + 1

    def dead_letter_for(self, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
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
