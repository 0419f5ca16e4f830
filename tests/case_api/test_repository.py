"""The SQL of the case service where the order of its statements matters to other transactions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from case_api import repository
from shared.db import Database

AT = datetime(2026, 11, 30, tzinfo=UTC)
UNASSIGNED = ("unassigned", "Unassigned")
# Sorts after ``unassigned``: in any other order than the codes' the two would deadlock.
LATER = ("upt-x", "UPT X")


async def _waiting_for_a_lock(database: Database, session: AsyncSession) -> None:
    pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with database.engine.connect() as watcher:
        for _ in range(200):
            waiting = (await watcher.execute(text(
                "SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                {"pid": pid})).scalar_one()
            if waiting:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the move never waited for the consumer's lock")


async def _counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(text("SELECT code, complaints FROM cases.agencies"))
    return {code: complaints for code, complaints in rows}


async def test_moving_a_complaint_locks_agencies_in_the_order_a_consumer_does(
        database_url: str) -> None:
    """A consumer counting complaints holds ``unassigned`` and goes on to ``upt-x``, while staff
    move a complaint from ``unassigned`` to ``upt-x``: both finish, none is chosen as the
    victim of a deadlock, and the counts add up."""
    async with Database.opened(database_url, pool_size=3) as database:
        async with database.transaction() as session:
            await repository.see_agencies(session, [(*UNASSIGNED, AT), (*LATER, AT)])
        async with database.sessionmaker() as consumer, database.sessionmaker() as staff:
            await staff.execute(text("SELECT 1"))
            await repository.see_agencies(consumer, [(*UNASSIGNED, AT)])
            moving = asyncio.create_task(repository.move_complaint(staff, UNASSIGNED,
                                                                   (*LATER, AT)))
            await _waiting_for_a_lock(database, staff)
            await repository.see_agencies(consumer, [(*LATER, AT)])
            await consumer.commit()
            await moving
            await staff.commit()
        async with database.transaction() as session:
            counts = await _counts(session)
    assert counts == {"unassigned": 1, "upt-x": 3}


async def test_moving_a_complaint_to_its_own_agency_changes_nothing(database_url: str) -> None:
    async with Database.opened(database_url) as database:
        async with database.transaction() as session:
            await repository.see_agencies(session, [(*LATER, AT)])
        async with database.transaction() as session:
            await repository.move_complaint(session, LATER, (*LATER, AT))
        async with database.transaction() as session:
            counts = await _counts(session)
    assert counts == {"upt-x": 1}
