"""What a running service holds: settings, database, event bus, clock, background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request

from shared.bus import ConsumerRunner, DatabaseLogRunner, KafkaConsumerRunner, Subscription
from shared.clock import Clock, SystemClock
from shared.db import Database
from shared.events import CASES_TOPIC, COMPLAINTS_TOPIC
from shared.kafka_client import KafkaPublisher, ensure_topics
from shared.outbox import OutboxRelay
from shared.retry import forever
from shared.settings import Settings
from shared.tables import CASE_EVENTS, INTAKE_EVENTS, EventTables
from shared.token_cache import REVOCATIONS, RevocableCache
from shared.wakeup import Wakeup

logger = logging.getLogger(__name__)

# Background work holds a connection only while it applies a batch or delivers a message.
BACKGROUND_POOL_SIZE = 5
# ... and can wait for one: nobody waits on it.
BACKGROUND_POOL_TIMEOUT_SECONDS = 30.0

# Without Kafka the outbox tables are the log: which table holds which topic.
DATABASE_LOGS: dict[str, EventTables] = {
    COMPLAINTS_TOPIC: INTAKE_EVENTS,
    CASES_TOPIC: CASE_EVENTS,
}


@dataclass
class Runtime:
    """``database`` answers requests: a client waits on it, so it gives up within
    ``database_request_timeout_seconds``. ``background`` serves the work nobody waits on
    (consumers, relays, deliveries, purges), whose statements may rightly run far longer."""

    settings: Settings
    database: Database
    clock: Clock = field(default_factory=SystemClock)
    publisher: KafkaPublisher | None = None
    relays: list[OutboxRelay] = field(default_factory=list)
    consumers: list[ConsumerRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    wakeup: Wakeup | None = None
    # Callers of tokens seen lately (shared.auth.authenticate), kept while revocations are heard.
    tokens: RevocableCache[Any] = field(default_factory=RevocableCache)
    # Awaited first when the runtime stops, while the database is still open: what holds a
    # pooled connection between requests gives it back (intake's group commit).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    background: Database | None = None

    @classmethod
    def create(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        if settings.database_url is None:
            raise RuntimeError("ADUAN_DATABASE_URL is not set")
        publisher = None
        if settings.kafka_bootstrap_servers:
            publisher = KafkaPublisher(settings.kafka_bootstrap_servers,
                                       topic_prefix=settings.topic_prefix,
                                       linger_ms=settings.kafka_linger_ms)
        database = Database.connect(settings.database_url,
                                    pool_size=settings.database_pool_size,
                                    max_overflow=settings.database_max_overflow,
                                    pool_timeout=settings.database_pool_timeout_seconds,
                                    answer_within=settings.database_request_timeout_seconds)
        # Connections are opened as work needs them: a process that runs no background work
        # (an HTTP worker) opens none of these.
        background = Database.connect(settings.database_url, pool_size=BACKGROUND_POOL_SIZE,
                                      max_overflow=BACKGROUND_POOL_SIZE,
                                      pool_timeout=BACKGROUND_POOL_TIMEOUT_SECONDS)
        wakeup = Wakeup(database.dsn, fallback_seconds=settings.wakeup_fallback_seconds)
        database.after_outbox_commit = background.after_outbox_commit = wakeup.committed
        tokens: RevocableCache[Any] = RevocableCache()
        wakeup.watch(REVOCATIONS, tokens.forget, tokens.listening)
        return cls(settings, database, clock or SystemClock(), publisher, wakeup=wakeup,
                   tokens=tokens, background=background)

    @property
    def work_database(self) -> Database:
        """The database of background work (``background``; ``database`` when none)."""
        return self.background or self.database

    def relay(self, tables: EventTables) -> None:
        """Publishes this service's outbox to Kafka (nothing to do without Kafka)."""
        if self.publisher is None:
            return
        relay = OutboxRelay(self.work_database, tables, self.publisher,
                            poll_seconds=self.settings.relay_poll_seconds, wakeup=self.wakeup)
        self.relays.append(relay)
        self.spawn(f"relay:{tables.schema}", relay.run)

    def consume(self, subscription: Subscription) -> None:
        runner: ConsumerRunner
        if self.publisher is not None and self.settings.kafka_bootstrap_servers:
            runner = KafkaConsumerRunner(
                subscription, self.work_database,
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                publisher=self.publisher,
                group_prefix=self.settings.group_prefix,
                fetch_max_wait_ms=(self.settings.kafka_patient_fetch_max_wait_ms
                                   if subscription.patient
                                   else self.settings.kafka_fetch_max_wait_ms),
                fetch_min_bytes=(self.settings.kafka_patient_fetch_min_bytes
                                 if subscription.patient
                                 else self.settings.kafka_fetch_min_bytes),
                commit_interval_ms=self.settings.kafka_commit_interval_ms,
            )
        else:
            runner = DatabaseLogRunner(subscription, self.work_database, DATABASE_LOGS,
                                       poll_seconds=self.settings.consumer_poll_seconds,
                                       wakeup=self.wakeup)
        self.consumers.append(runner)
        if isinstance(runner, KafkaConsumerRunner):
            kafka_runner = runner
            topics = [runner.publisher.topic(t) for t in subscription.topics]

            async def topics_then_run() -> None:
                await ensure_topics(kafka_runner.bootstrap_servers, topics)
                await kafka_runner.run()

            self.spawn(f"consumer:{subscription.consumer}", topics_then_run)
            return
        self.spawn(f"consumer:{subscription.consumer}", runner.run)

    def listen(self) -> None:
        """Starts announcing this process's outbox commits and waking its readers."""
        if self.wakeup is not None:
            self.spawn("wakeup", self.wakeup.run)

    def spawn(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Runs ``run`` in the background, restarted after any failure, until ``stop()``."""
        guarded = forever(run, what=f"background task {name}", traceback=True)
        self.tasks.append(asyncio.create_task(guarded, name=name))

    async def stop(self) -> None:
        """Stops consumers first (committing nothing half-done), then flushes the relays."""
        for close in self.closers:
            await close()
        for task in self.tasks:
            if not task.get_name().startswith("relay:"):
                task.cancel()
        await asyncio.gather(*[t for t in self.tasks if not t.get_name().startswith("relay:")],
                             return_exceptions=True)
        relay_tasks = [t for t in self.tasks if t.get_name().startswith("relay:")]
        for task in relay_tasks:
            task.cancel()
        await asyncio.gather(*relay_tasks, return_exceptions=True)
        for relay in self.relays:
            await relay.drain(within=5.0)
        if self.publisher is not None:
            await self.publisher.close()
        await self.database.dispose()
        if self.background is not None:
            await self.background.dispose()


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request)


# A coroutine: FastAPI would run a plain function in a thread, which costs more than the look-up.
RuntimeDep = Annotated[Runtime, Depends(_runtime)]


# Read from the request rather than through ``RuntimeDep``: a dependency of a dependency costs
# each request another resolution by FastAPI, for a look-up of one attribute.
async def clock_of(request: Request) -> Clock:
    return runtime_of(request).clock


async def zone_of(request: Request) -> ZoneInfo:
    return runtime_of(request).settings.zone


# What endpoints take instead of reaching into ``request.app.state``: tests give the app a
# shifted clock, and the office's time zone comes from the settings.
ClockDep = Annotated[Clock, Depends(clock_of)]
ZoneDep = Annotated[ZoneInfo, Depends(zone_of)]
