"""A BI login that SETs its limits away still has its runaway statements and open transactions
ended, by the metrics service, over TCP as the BI tool sees it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from metrics_worker.bi_watchdog import BiWatchdog, missing_privileges
from services import bi_users
from shared.db import Database, asyncpg_dsn
from shared.settings import Settings
from tests.support import BackingServices, eventually, running_app


@pytest.fixture
async def login(services: BackingServices) -> AsyncIterator[str]:
    """A BI login's connection URI, dropped afterwards."""
    name = f"bi_{uuid.uuid4().hex[:8]}"
    created = await bi_users.create(services.database_url, name)
    try:
        yield created.uri
    finally:
        await bi_users.revoke(services.database_url, name)


async def gone(owner: asyncpg.Connection, pid: int) -> None:
    assert not await owner.fetchval("SELECT EXISTS (SELECT FROM pg_stat_activity "
                                    "WHERE pid = $1)", pid)


async def test_the_metrics_service_ends_what_a_bi_login_keeps_running_past_its_limit(
        services: BackingServices, login: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="metrics_worker.bi_watchdog")
    owner = await asyncpg.connect(asyncpg_dsn(services.database_url))
    runaway, idle, locker = [await asyncpg.connect(login) for _ in range(3)]
    try:
        # Logins start with the limit the watchdog enforces by default.
        assert Settings.model_fields["bi_query_limit_seconds"].default == 120
        assert await runaway.fetchval("SHOW statement_timeout") == "2min"
        await runaway.execute("SET statement_timeout = 0")
        for session in (idle, locker):
            await session.execute("SET idle_in_transaction_session_timeout = 0")
        async with running_app(services, "metrics", bi_query_limit_seconds=1.0,
                               bi_watchdog_interval_seconds=0.2):
            started = time.monotonic()
            with pytest.raises(asyncpg.QueryCanceledError, match="user request"):
                await runaway.fetchval("SELECT pg_sleep(60)")
            assert time.monotonic() - started < 20
            # Only the statement was cancelled: the session reads on.
            assert await runaway.fetchval("SELECT count(*) FROM metrics.bi_cases") == 0

            # A transaction left open, and an advisory lock on the turn of intake's sequencer
            # (shared/outbox.py), end with their sessions.
            await idle.execute("BEGIN; SELECT count(*) FROM metrics.bi_contacts")
            idle_pid = await owner.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND state LIKE "
                "'idle in transaction%'", make_url(login).username)
            locker_pid = await locker.fetchval(
                "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock("
                "hashtext('aduan.sequencer.intake'))) AS taken")
            await eventually(lambda: gone(owner, locker_pid), timeout=20)
            await eventually(lambda: gone(owner, idle_pid), timeout=20)
        for ended in (idle, locker):
            with pytest.raises((asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError,
                                asyncpg.InterfaceError)):
                await ended.fetchval("SELECT 1")
        assert await owner.fetchval("SELECT pg_try_advisory_xact_lock("
                                    "hashtext('aduan.sequencer.intake'))")
        logged = caplog.text
        assert "cancelled session" in logged
        assert "pg_sleep(60)" in logged
        assert "it took an advisory lock" in logged
        assert "transaction open" in logged
    finally:
        for connection in (owner, runaway, idle, locker):
            connection.terminate()


async def test_the_watchdog_needs_to_see_and_signal_other_sessions(
        services: BackingServices, login: str, caplog: pytest.LogCaptureFixture) -> None:
    """aduan on a PostgreSQL of the operator's, as neither superuser nor owner of the BI logins:
    it says what to grant, and once granted it works."""
    caplog.set_level(logging.WARNING, logger="metrics_worker.bi_watchdog")
    url = make_url(services.database_url)
    owner = await asyncpg.connect(asyncpg_dsn(services.database_url))
    app_role, password = f"app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    database = await owner.fetchval("SELECT quote_ident(current_database())")
    await owner.execute(f"CREATE ROLE \"{app_role}\" LOGIN PASSWORD '{password}'")
    await owner.execute(f'GRANT CONNECT ON DATABASE {database} TO "{app_role}"')
    app = Database.connect(url.set(username=app_role, password=password)
                           .render_as_string(hide_password=False), pool_size=1)
    runaway = await asyncpg.connect(login)
    try:
        await runaway.execute("SET statement_timeout = 0")
        sleeping = asyncio.create_task(runaway.fetchval("SELECT pg_sleep(60)"))
        watchdog = BiWatchdog(app, limit_seconds=0.5, interval_seconds=0.2)
        await asyncio.sleep(1.0)
        async with app.autocommit() as connection:
            told = await missing_privileges(connection)
        assert told is not None
        assert f'GRANT pg_read_all_stats, pg_signal_backend TO "{app_role}"' in told
        assert await watchdog.look() == []
        assert not sleeping.done()
        assert "cannot be ended" in caplog.text

        await owner.execute(f'GRANT pg_read_all_stats, pg_signal_backend TO "{app_role}"')
        async with app.autocommit() as connection:
            assert await missing_privileges(connection) is None
        ended = await watchdog.look()
        assert [(e.action, e.query) for e in ended] == [("cancelled", "SELECT pg_sleep(60)")]
        with pytest.raises(asyncpg.QueryCanceledError):
            await sleeping
    finally:
        runaway.terminate()
        await app.dispose()
        await owner.execute(f'REVOKE ALL ON DATABASE {database} FROM "{app_role}"')
        await owner.execute(f'DROP ROLE IF EXISTS "{app_role}"')
        await owner.close()


async def test_a_bi_login_that_listens_and_reads_nothing_is_ended(
        services: BackingServices, login: str) -> None:
    """PostgreSQL keeps every notification until each listener has taken it: a session that
    LISTENs and never reads its socket lets the queue grow on disk until NOTIFY fails for all."""
    owner = await asyncpg.connect(asyncpg_dsn(services.database_url))
    stuck, flooder = await asyncpg.connect(login), await asyncpg.connect(login)
    database = Database.connect(services.database_url, pool_size=1)
    watchdog = BiWatchdog(database, limit_seconds=120, interval_seconds=5)
    try:
        await stuck.add_listener("anything", lambda *_: None)
        stuck_pid = stuck.get_server_pid()
        # A client that stops reading: asyncpg's own transport, paused.
        stuck._transport.pause_reading()

        async def blocked() -> None:
            await flooder.execute("SELECT count(pg_notify('anything', repeat('y', 7000) || g))"
                                  " FROM generate_series(1, 1000) g")
            assert await owner.fetchval("SELECT wait_event FROM pg_stat_activity "
                                        "WHERE pid = $1", stuck_pid) == "ClientWrite"

        await eventually(blocked, timeout=30)
        assert await owner.fetchval("SELECT pg_notification_queue_usage()") > 0
        assert await watchdog.look() == []  # seen once: it might be a moment's
        ended = await watchdog.look()
        assert [(e.pid, e.action) for e in ended] == [(stuck_pid, "terminated")]
        await eventually(lambda: gone(owner, stuck_pid), timeout=20)
    finally:
        stuck.terminate()
        await flooder.close()
        await owner.close()
        await database.dispose()
