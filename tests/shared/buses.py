"""The two buses the contract runs on, driven the way a service drives them: the database log
and Kafka (with the outbox relay), each able to stop mid-work, rewind and start again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import ConsumerRecord
from sqlalchemy import (
    select,
    update,
)

from shared.bus import (
    DatabaseLogRunner,
    KafkaConsumerRunner,
)
from shared.events import CONTENT_TYPE
from shared.kafka_client import Headers, KafkaPublisher
from shared.outbox import OutboxRelay
from shared.settings import Settings
from tests.shared.kafka_topics import commit_offsets, group_offsets, read_topic
from tests.shared.probe import (
    BATCH,
    CONSUMER,
    POLICY,
    PROBE_EVENTS,
    PROBE_TOPIC,
    DeadLetter,
    Effect,
    Probe,
)
from tests.support import eventually

# As the services fetch: a fetch waits for this many bytes (or ``fetch_max_wait_ms``), so the
# contract holds with batches gathered by the broker, and a lone event still arrives.
FETCH_MIN_BYTES: int = Settings.model_fields["kafka_fetch_min_bytes"].default
COMMIT_INTERVAL_MS: int = Settings.model_fields["kafka_commit_interval_ms"].default


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
                                   group_prefix=self.prefix, fetch_min_bytes=FETCH_MIN_BYTES,
                                   commit_interval_ms=COMMIT_INTERVAL_MS)

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


async def applied(bus: Bus, count: int) -> list[Effect]:
    """The effects once there are ``count`` and the consumer has moved past the whole log."""

    async def check() -> list[Effect]:
        bus.background.check()
        effects = await bus.probe.effects()
        assert len(effects) >= count, f"{len(effects)} of {count} applied"
        await bus.caught_up()
        return effects

    return await eventually(check, timeout=60, interval=0.05)
