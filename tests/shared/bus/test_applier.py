"""The applier against the real database: an outage is waited out, a bad event dead-lettered."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import Applier, RetryPolicy
from shared.events import Event
from tests.shared.probe import Probe, probe_event

# One counted failure dead-letters: any retry seen below is an outage, not an attempt.
ONE_ATTEMPT = RetryPolicy(attempts=1, retry_later_seconds=0.0, pause=0.01)


def server_going_away(orig: Exception) -> DBAPIError:
    """What SQLAlchemy raises when the server ends the connection mid-statement: a plain
    DBAPIError (not an OperationalError) whose driver error is asyncpg's."""
    return DBAPIError("INSERT INTO probe.effects ...", None, orig)


class Failing:
    """The probe's handler, failing the first ``times`` calls with ``error``."""

    def __init__(self, probe: Probe, error: Exception, times: int) -> None:
        self.probe, self.error, self.left = probe, error, times

    async def __call__(self, session: AsyncSession, event: Event) -> None:
        if self.left > 0:
            self.left -= 1
            raise self.error
        await self.probe.handle(session, event)


async def apply(probe: Probe, handler: Failing) -> tuple[Applier, list[tuple[str | None, str]]]:
    subscription = probe.subscription
    applier = Applier(probe.database, type(subscription)(
        subscription.consumer, subscription.topics, handler, subscription.tables), ONE_ATTEMPT)
    dead: list[tuple[str | None, str]] = []

    async def dead_letter(event: Event | None, error: str) -> None:
        dead.append((event.id if event else None, error))

    await applier.apply_single(probe_event("k", 1), dead_letter)
    return applier, dead


@pytest.mark.parametrize("orig", [
    # A server shutting down or starting up: waited out.
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    # A race lost to another transaction: applied again, the event succeeds.
    asyncpg.DeadlockDetectedError("deadlock detected"),
    asyncpg.SerializationError("could not serialize access"),
], ids=lambda orig: type(orig).__name__)
async def test_a_passing_failure_is_retried_not_counted(probe: Probe,
                                                        orig: Exception) -> None:
    """Failures that are not the event's own are retried without counting against it, so
    they never dead-letter it."""
    handler = Failing(probe, server_going_away(orig), times=4)
    applier, dead = await apply(probe, handler)
    assert handler.left == 0
    assert dead == []
    assert applier.dead_lettered == 0
    assert [effect.seq for effect in await probe.effects()] == [1]


async def test_an_error_of_the_event_itself_is_dead_lettered(probe: Probe) -> None:
    wrong = server_going_away(asyncpg.UniqueViolationError("duplicate key value"))
    handler = Failing(probe, wrong, times=4)
    applier, dead = await apply(probe, handler)
    assert handler.left == 3  # one attempt, then dead-lettered
    assert len(dead) == 1
    assert dead[0][1].startswith("DBAPIError")
    assert applier.dead_lettered == 1
    assert await probe.effects() == []
