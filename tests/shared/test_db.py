"""A pooled connection lent outside any transaction (``Database.autocommit``): what it commits,
and what the pool lends after it failed."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared.db import Database, on_driver
from shared.problems import database_problem
from tests.support import eventually, query


async def gone(database_url: str, pid: int) -> None:
    assert not await query(database_url, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid)


async def test_each_statement_commits_on_its_own(database_url: str) -> None:
    async with Database.opened(database_url) as database:
        async with database.autocommit() as driver:
            await driver.execute("CREATE TABLE public.notes (note text PRIMARY KEY)")
            await driver.execute("INSERT INTO public.notes VALUES ('first')")
            # Read from outside while the connection is still lent: already committed.
            assert [r["note"] for r in await query(database_url, "SELECT note FROM public.notes")
                    ] == ["first"]
        with pytest.raises(IntegrityError):
            async with database.autocommit() as driver:
                await driver.execute("INSERT INTO public.notes VALUES ('first')")
        async with database.autocommit() as driver:  # the refused statement left it usable
            assert await driver.fetchval("SELECT count(*) FROM public.notes") == 1


async def test_a_statement_cancelled_half_way_never_lends_its_connection_again(
        database_url: str) -> None:
    async with Database.opened(database_url) as database:

        async def sleeping() -> None:
            async with database.autocommit() as driver:
                started.set_result(driver.get_server_pid())
                await driver.fetchval("SELECT pg_sleep(30)")

        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(sleeping())
        cancelled_pid = await started
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with database.autocommit() as driver:
            assert driver.get_server_pid() != cancelled_pid
            assert await driver.fetchval("SELECT 1") == 1


async def test_a_connection_the_server_ended_is_replaced(database_url: str) -> None:
    async with Database.opened(database_url) as database:
        ended: list[int] = []

        async def ended_under_it() -> None:
            async with database.autocommit() as driver:
                ended.append(driver.get_server_pid())
                await query(database_url, "SELECT pg_terminate_backend($1)", ended[0])
                await eventually(lambda: gone(database_url, ended[0]), timeout=10)
                await driver.fetchval("SELECT 1")

        with pytest.raises(DBAPIError):
            await ended_under_it()
        [ended_pid] = ended
        async with database.autocommit() as driver:
            assert driver.get_server_pid() != ended_pid
            assert await driver.fetchval("SELECT 1") == 1


async def test_a_statement_on_the_driver_stays_in_the_sessions_transaction(
        database_url: str) -> None:
    async with Database.opened(database_url) as database:
        async with database.autocommit() as driver:
            await driver.execute("CREATE TABLE public.notes (note text PRIMARY KEY)")
        # The first statement of the session goes on the driver: the transaction is begun for
        # it, so that it is rolled back with the session's work...
        async def fails_after_it() -> None:
            async with database.transaction() as session:
                async with on_driver(session) as driver:
                    await driver.execute("INSERT INTO public.notes VALUES ('undone')")
                    assert driver.is_in_transaction()
                raise RuntimeError("the edge fails after it")

        with pytest.raises(RuntimeError):
            await fails_after_it()
        assert await query(database_url, "SELECT note FROM public.notes") == []
        # ... and committed with it, through the session, as a statement SQLAlchemy sent.
        async with database.transaction() as session:
            async with on_driver(session) as driver:
                await driver.execute("INSERT INTO public.notes VALUES ('kept')")
            await session.execute(text("INSERT INTO public.notes VALUES ('beside')"))
        assert sorted(r["note"] for r in await query(
            database_url, "SELECT note FROM public.notes")) == ["beside", "kept"]


async def test_a_requests_statement_runs_within_its_bound_and_background_work_longer(
    database_url: str,
) -> None:
    """``answer_within``: PostgreSQL cancels a request's statement that runs longer (57014,
    answered 503 with Retry-After) and the connection serves the next one; a database for
    background work lets the same statement finish."""
    requests = Database.connect(database_url, pool_size=1, answer_within=0.3)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(DBAPIError) as cancelled:
            async with requests.transaction() as session:
                await session.execute(text("SELECT pg_sleep(0.9)"))
        assert asyncio.get_running_loop().time() - started < 0.9
        problem = database_problem(cancelled.value)
        assert (problem.status, problem.headers["Retry-After"]) == (503, "5")
        with pytest.raises(DBAPIError) as on_driver_too:
            async with requests.autocommit() as driver:
                await driver.execute("SELECT pg_sleep(0.9)")
        assert database_problem(on_driver_too.value).status == 503
        async with requests.autocommit() as driver:
            assert await driver.fetchval("SELECT current_setting('statement_timeout')") == "300ms"
    finally:
        await requests.dispose()
    async with Database.opened(database_url) as background, background.autocommit() as driver:
        await driver.execute("SELECT pg_sleep(0.9)")
