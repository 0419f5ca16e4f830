"""Applying events exactly once in effect: the processed-event row and the effect share a commit.

Both buses (``shared.bus.kafka`` and ``shared.bus.database_log``) deliver at least once; the
``Applier`` turns that into one effect per event, retries what may succeed later and hands what
never will to the runner's dead letter.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import tracing
from shared.db import Database, on_driver
from shared.events import Event
from shared.problems import is_connection_loss, is_transient_conflict
from shared.retry import forever, retried
from shared.tables import ConsumerTables

logger = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Event], Awaitable[None]]
# Applies a batch of events (none applied before) in one go, in order, each continuing its own
# trace; raising makes the runner apply the batch again one event at a time with ``handler``.
BatchHandler = Callable[[AsyncSession, Sequence[Event]], Awaitable[None]]
# Extra work done in the effect's transaction (the database log moves its position there).
AlsoInTransaction = Callable[[AsyncSession], Awaitable[None]]
DeadLetter = Callable[[Event | None, str], Awaitable[None]]

TRANSIENT = (OperationalError, InterfaceError, OSError, ConnectionError, TimeoutError)


def is_outage(exc: Exception) -> bool:
    """The database or the broker is unreachable: the event is not at fault. A server shutting
    down or restarting (57P01, 57P03) reaches us as a plain DBAPIError, not an
    OperationalError; counted as the event's failure it would dead-letter a good event."""
    return isinstance(exc, TRANSIENT) or (isinstance(exc, DBAPIError) and is_connection_loss(exc))


class RetryLater(Exception):
    """The event cannot be applied yet (for example its case is not known yet)."""


class Parked(Exception):
    """Raised instead of waiting, when the caller can move on and come back to the event."""


class UnknownEventType(Exception):
    """A well-formed event of a type this consumer does not handle."""


@dataclass(frozen=True)
class Subscription:
    """What a consumer reads (``topics``) and what it does with each event (``handler``)."""

    consumer: str
    topics: tuple[str, ...]
    handler: Handler
    tables: ConsumerTables
    # Set when a batch is cheaper applied as a whole (a statement per table, not per event).
    batch_handler: BatchHandler | None = None
    # Its effects may lag a moment (figures, webhook deliveries, a complaint's status): over
    # Kafka it waits longer for larger batches (``kafka_patient_fetch_*``), since each batch
    # costs a transaction, an offset commit and a fetch whatever its size. Off the path of a
    # complaint to its case, which waits for no batch.
    patient: bool = False


@dataclass
class RetryPolicy:
    attempts: int = 3
    retry_later_seconds: float = 60.0
    pause: float = 0.2


async def apply_once(session: AsyncSession, subscription: Subscription, event: Event) -> bool:
    """Applies ``event`` unless this consumer already did; True when it was applied now."""
    if not await claim(session, subscription, [event]):
        return False
    # What the handler writes to its own outbox continues the trace of the event.
    with tracing.continued(event.trace):
        await subscription.handler(session, event)
    return True


async def claim(session: AsyncSession, subscription: Subscription,
                events: Sequence[Event]) -> list[Event]:
    """Marks ``events`` processed by this consumer in one statement; returns those not marked
    before, in order, each once (a batch may hold one event twice after a relay's retry).

    Sent on the driver (``on_driver``): once per batch of every consumer, it is among the
    busiest statements there are."""
    ids = sorted({event.id for event in events})  # one lock order for concurrent claimers
    async with on_driver(session) as driver:
        claimed = {row[0] for row in await driver.fetch(
            _claim_sql(subscription.tables.processed_events.schema),
            subscription.consumer, ids)}
    fresh = []
    for event in events:
        if event.id in claimed:
            claimed.discard(event.id)
            fresh.append(event)
    return fresh


@functools.cache
def _claim_sql(schema: str) -> str:
    return (f"INSERT INTO {schema}.processed_events (consumer, event_id) "
            "SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING event_id")


@dataclass
class Applier:
    """Applies events one transaction at a time, with retries, and dead-letters what cannot be."""

    database: Database
    subscription: Subscription
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    dead_lettered: int = 0  # read by the /metrics endpoint (shared/telemetry.py)

    async def apply_batch(self, events: Sequence[Event],
                          also: AlsoInTransaction | None = None) -> None:
        """All in one transaction; raises if any event fails (the caller then goes one by one).

        One statement marks the whole batch processed; the handler runs for the events not
        processed before, in order, in the same transaction.
        """
        async with self.database.transaction() as session:
            if len(events) == 1:
                await apply_once(session, self.subscription, events[0])
            elif events:
                fresh = await claim(session, self.subscription, events)
                if self.subscription.batch_handler is not None:
                    await self.subscription.batch_handler(session, fresh)
                else:
                    for event in fresh:
                        with tracing.continued(event.trace):
                            await self.subscription.handler(session, event)
            if also is not None:
                await also(session)

    async def apply_single(self, event: Event, dead_letter: DeadLetter,
                           also: AlsoInTransaction | None = None,
                           *, parkable: bool = False) -> None:
        """Applies one event with retries; ``parkable`` raises ``Parked`` on ``RetryLater``.

        An outage is waited out however long it lasts and never counts against the event;
        ``RetryLater`` is tried again for ``retry_later_seconds``; any other failure
        ``attempts`` times. Then the event is dead-lettered."""
        consumer = self.subscription.consumer
        failures = 0
        waiting_since: float | None = None

        def worth_retrying(exc: Exception) -> bool:
            nonlocal failures, waiting_since
            if isinstance(exc, RetryLater):
                now = time.monotonic()
                waiting_since = now if waiting_since is None else waiting_since
                return not parkable and now - waiting_since < self.policy.retry_later_seconds
            if isinstance(exc, UnknownEventType):
                return False
            if is_outage(exc):
                cause = exc.orig if isinstance(exc, DBAPIError) else exc
                logger.warning("%s: backing service unavailable (%s); retrying", consumer,
                               type(cause).__name__)
                return True
            if isinstance(exc, DBAPIError) and is_transient_conflict(exc):
                # Lost a race with another transaction (a deadlock): not the event's fault.
                logger.warning("%s: event %s conflicted (%s); retrying", consumer, event.id,
                               type(exc.orig).__name__)
                return True
            failures += 1
            logger.warning("%s: event %s failed (%d/%d): %s: %s", consumer, event.id, failures,
                           self.policy.attempts, type(exc).__name__, exc)
            return failures < self.policy.attempts

        try:
            await retried(lambda: self.apply_batch([event], also), when=worth_retrying,
                          wait_initial=self.policy.pause, wait_jitter=self.policy.pause)
        except RetryLater as exc:
            if parkable:
                raise Parked(str(exc)) from exc
            waited = time.monotonic() - (waiting_since or time.monotonic())
            await self.dead(event, f"not applicable after {waited:.0f}s: {exc}", dead_letter)
        except UnknownEventType as exc:
            await self.dead(event, f"unknown event type: {exc}", dead_letter)
        except Exception as exc:
            await self.dead(event, f"{type(exc).__name__}: {exc}", dead_letter)

    async def dead(self, event: Event | None, error: str, dead_letter: DeadLetter) -> None:
        """Hands the event (None when unreadable) to ``dead_letter``, retrying until it is kept:
        skipping past an event that was neither applied nor dead-lettered would lose it."""
        await forever(lambda: dead_letter(event, error),
                      what=f"{self.subscription.consumer}: dead letter")
        self.dead_lettered += 1
