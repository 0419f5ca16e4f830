"""Database-log readers sleep until a commit announces new events; an idle service is quiet."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from shared.wakeup import Wakeup, channel
from tests.support import BackingServices, bearer, complaint, eventually, running_app


async def _commits(services: BackingServices) -> int:
    dsn = services.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        return int(await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
    finally:
        await connection.close()


async def test_a_new_complaint_wakes_the_consumers_that_would_otherwise_sleep_a_minute(
        services: BackingServices) -> None:
    token = await services.token("assistant")
    async with running_app(services, consumer_poll_seconds=60, relay_poll_seconds=60,
                           wakeup_fallback_seconds=60) as client:
        await asyncio.sleep(1.0)  # the readers have looked once and gone to sleep
        created = await client.post("/v1/complaints", json=complaint(), headers=bearer(token))
        assert created.status_code == 201, created.text
        complaint_id = created.json()["id"]

        async def case_opened() -> None:
            response = await client.get(f"/v1/cases/{complaint_id}", headers=bearer(token))
            assert response.status_code == 200, response.text

        await eventually(case_opened, timeout=30)  # well before the 60 s poll


async def test_an_idle_service_makes_next_to_no_queries(services: BackingServices) -> None:
    async with running_app(services, wakeup_fallback_seconds=60):
        await asyncio.sleep(2.0)
        before = await _commits(services)
        await asyncio.sleep(3.0)
        after = await _commits(services)
    # Polling would be ~20 commits a second per reader (three readers, 0.05 s in the tests);
    # statistics reach pg_stat_database late, so a few of the start-up's may still arrive.
    assert after - before <= 15, f"{after - before} commits in 3 s of idling"


async def test_a_notification_whose_connection_broke_is_sent_on_the_next(
        services: BackingServices) -> None:
    dsn = services.database_url.replace("postgresql+asyncpg://", "postgresql://")
    wakeup = Wakeup(dsn, fallback_seconds=60)
    listener = await asyncpg.connect(dsn)
    heard = asyncio.Event()
    await listener.add_listener(channel("intake"), lambda *_: heard.set())
    running = asyncio.create_task(wakeup.run())
    try:
        for _ in range(100):
            if wakeup.listening:
                break
            await asyncio.sleep(0.05)
        others = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                  "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        await listener.execute(f"SELECT pg_terminate_backend(pid) FROM ({others}) o")
        for _ in range(100):  # gone, so the notification meets a broken connection
            if not await listener.fetch(others):
                break
            await asyncio.sleep(0.05)
        assert not heard.is_set()
        wakeup.committed({"intake"})
        await asyncio.wait_for(heard.wait(), 15)  # well before the 60 s fallback
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await listener.close()


async def test_a_reader_subscribing_late_looks_again_once_its_channel_is_heard(
        services: BackingServices) -> None:
    """A reader that subscribes while the process already listens looks once, sleeps, and its
    ``LISTEN`` takes effect a moment later: a commit announced in between was not heard, so
    the reader is woken once its channel is heard, then by every notification after that."""
    dsn = services.database_url.replace("postgresql+asyncpg://", "postgresql://")
    wakeup = Wakeup(dsn, fallback_seconds=60)
    running = asyncio.create_task(wakeup.run())
    notifier = await asyncpg.connect(dsn)
    try:
        for _ in range(100):
            if wakeup.listening:
                break
            await asyncio.sleep(0.05)
        assert wakeup.listening
        woken = wakeup.subscribe("cases")
        await asyncio.wait_for(woken.wait(), 15)  # not the 60 s fallback
        woken.clear()
        await notifier.execute("SELECT pg_notify($1, '')", channel("cases"))
        await asyncio.wait_for(woken.wait(), 15)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await notifier.close()
