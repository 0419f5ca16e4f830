"""Engine, sessions and the declarative base shared by the three services.

The request (or message) edge owns the transaction: it opens a session, the service code only
``flush()``es, and the edge commits or rolls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, event, func, make_url
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def asyncpg_dsn(url: str, *, database: str | None = None, username: str | None = None) -> str:
    """The plain ``postgresql://`` form of a SQLAlchemy URL, for asyncpg and libpq tools;
    ``database`` and ``username`` replace the URL's own."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    if username is not None:
        parsed = parsed.set(username=username)
    return parsed.render_as_string(hide_password=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# When a row was written, by the database's clock: ``created_at: Mapped[WrittenAt]``.
WrittenAt = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]


# ``session.info`` key: the schemas whose outbox a transaction appended to (``shared.outbox``),
# and other tables readers wait on (webhook deliveries), announced after the commit.
OUTBOX_APPENDED = "outbox_appended"


def announce_after_commit(session: AsyncSession, name: str) -> None:
    """Readers waiting on ``name`` (``shared.wakeup``) are told once this transaction commits."""
    session.info.setdefault(OUTBOX_APPENDED, set()).add(name)


# A pooled connection idle longer than this is pinged before it is lent out again.
PING_AFTER_IDLE_SECONDS = 10.0

# The limits of work that may take long (consumers, relays, rebuilds, commands): a connection
# opened within this long, a statement answered within this long.
CONNECT_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 30.0
# A request's database (``Database.connect(answer_within=...)``) waits for a statement this much
# longer than PostgreSQL lets it run: a server that is alive cancels it itself, and answers so
# (the connection stays usable); only one that does not answer at all is given up on.
GIVE_UP_AFTER_CANCEL_SECONDS = 0.5
_CHECKED_IN_AT = "checked_in_at"


def _lend(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Checks a pooled connection before it is lent out, without a round trip when it is busy.

    SQLAlchemy's ``pool_pre_ping`` costs three round trips on every check-out (BEGIN, an empty
    statement, ROLLBACK): more than the statements of a complaint posted. A connection the
    server closed (a restart, an administrator) is known closed to the driver as soon as the
    event loop saw its socket end; one that sat idle long enough to have been cut off silently
    is pinged. Either way the pool replaces it with a new one (``DisconnectionError``).
    """
    driver: asyncpg.Connection = dbapi_connection.driver_connection
    if driver.is_closed():
        raise DisconnectionError("the server closed this connection")
    idle_since: float | None = record.info.get(_CHECKED_IN_AT)
    if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # Closed at once: the pool's own close would wait on a server that may not answer.
            driver.terminate()
            raise DisconnectionError("this connection no longer answers") from exc


def _returned(_dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _given_up(context: ExceptionContext) -> None:
    """A statement (or commit) the driver stopped waiting for leaves its connection unusable.

    asyncpg asked the server to cancel it, but a server that does not answer (stalled, its
    host frozen) answers no cancellation either, and anything sent next on the connection
    would wait behind it. So the connection is closed at once and the pool forgets it: a
    transaction on it can no longer commit (the server ends it when it sees the connection
    gone), and the error reaches the edge without a further wait on a rollback or on the
    pool's own, polite close.
    """
    if not isinstance(context.original_exception, TimeoutError) or context.connection is None:
        return
    with contextlib.suppress(Exception):
        driver = context.connection.connection.driver_connection
        if driver is not None:
            driver.terminate()
    context.is_disconnect = True


class CommitUnanswered(TimeoutError):
    """A COMMIT was sent but its answer did not come in time: the transaction may or may not
    have committed (``shared.problems.outcome_unknown``)."""


@dataclass
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Told after a commit that appended to outboxes (``shared.wakeup``): readers wake on it.
    after_outbox_commit: Callable[[set[str]], None] | None = None
    # The longest a request waits on this database for one thing; None for a database of
    # background work (``connect``).
    answer_within: float | None = None

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10, max_overflow: int | None = None,
                pool_timeout: float = 10.0, answer_within: float | None = None) -> Database:
        """A pool of connections to ``url``.

        ``answer_within`` (seconds) makes it a database for requests, whose clients wait for
        the answer: a connection is opened within that long, and a statement runs for at most
        that long before PostgreSQL cancels it (``statement_timeout``, 57014, which the edge
        answers 503); a server that does not answer even its cancellation (stalled) is given up
        ``GIVE_UP_AFTER_CANCEL_SECONDS`` later, its connection closed (``_given_up``). Without
        it, the limits of background work: consumers, relays, rebuilds and commands may run
        statements far longer than a client would wait, and keep ``COMMAND_TIMEOUT_SECONDS``.
        """
        connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS,
                                        "command_timeout": COMMAND_TIMEOUT_SECONDS}
        if answer_within is not None:
            connect_args = {
                "timeout": answer_within,
                "command_timeout": answer_within + GIVE_UP_AFTER_CANCEL_SECONDS,
                "server_settings": {"statement_timeout": str(max(1, round(answer_within * 1000)))},
            }
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
            # Checked when lent out by ``_lend`` instead of ``pool_pre_ping``.
            # Statement parameters hold reporters' personal data: keep them out of errors/logs.
            hide_parameters=True,
            pool_timeout=pool_timeout,
            connect_args=connect_args,
        )
        event.listen(engine.sync_engine.pool, "checkout", _lend)
        event.listen(engine.sync_engine.pool, "checkin", _returned)
        if answer_within is not None:
            # Only here: an engine with a listener pays SQLAlchemy's event dispatch on every
            # statement, and background work, whose waits are long anyway, needs none.
            event.listen(engine.sync_engine, "handle_error", _given_up)
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False),
                   answer_within=answer_within)

    @classmethod
    @asynccontextmanager
    async def opened(cls, url: str, *, pool_size: int = 1) -> AsyncIterator[Database]:
        """A database for one piece of work (a command, a test step), disposed of after it."""
        database = cls.connect(url, pool_size=pool_size)
        try:
            yield database
        finally:
            await database.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on success and rolled back on error.

        On a database for requests, a commit the server did not answer in time is told apart
        (``CommitUnanswered``), as is one whose connection was lost during the commit: the
        statements before it were answered, so the transaction may have committed, and a
        client told to retry might record its work twice. A statement
        given up before the commit leaves nothing committed (its connection is closed,
        ``_given_up``) and is answered as the database being too slow.
        """
        async with self.sessionmaker() as session:
            committing = False
            try:
                async with session.begin():
                    yield session
                    # Pending changes sent now, so that only COMMIT remains.
                    await session.flush()
                    committing = True
            except TimeoutError as exc:
                if committing and self.answer_within is not None:
                    raise CommitUnanswered() from exc
                raise
            except DBAPIError as exc:
                # The connection lost while COMMIT was on its way or being answered (the
                # server restarted, its session ended): in doubt just the same.
                if committing and exc.connection_invalidated and self.answer_within is not None:
                    raise CommitUnanswered() from exc
                raise
            appended: set[str] | None = session.info.pop(OUTBOX_APPENDED, None)
            if appended and self.after_outbox_commit is not None:
                self.after_outbox_commit(appended)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection's driver outside any transaction: each statement sent on it
        commits on its own, in one round trip.

        For the busiest path (a complaint posted), whose effect is one statement: no BEGIN and
        no COMMIT of their own. The driver's errors leave as ``on_driver``'s do.
        """
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            async with _driver_errors(connection):
                yield driver
            if not driver.is_closed() and driver.is_in_transaction():
                # A transaction begun on the driver and left open: never lent out so.
                await _drop(connection)

    def announce(self, *names: str) -> None:
        """Readers waiting on ``names`` are told now: what they wait for was committed by a
        statement sent outside a session (``autocommit``)."""
        if self.after_outbox_commit is not None:
            self.after_outbox_commit(set(names))

    async def ping(self) -> None:
        """A round trip on a connection of its own: never cancels a pooled connection."""
        connection = await asyncpg.connect(self.dsn, timeout=3, command_timeout=3)
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close(timeout=3)

    @property
    def dsn(self) -> str:
        return asyncpg_dsn(self.engine.url.render_as_string(hide_password=False))

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def on_driver(session: AsyncSession) -> AsyncIterator[asyncpg.Connection]:
    """The asyncpg connection under ``session``'s transaction, begun on the server.

    For the statements of the busiest path (one per complaint posted): run on the driver they
    cost a fraction of the CPU they cost through SQLAlchemy's async adaptation, and they stay in
    the session's transaction, committed or rolled back by the edge with everything else. The
    adapter begins the server's transaction with its first statement; should none have run yet,
    it is begun here, since a statement sent on the driver outside a transaction would commit
    on its own. The driver's errors leave as SQLAlchemy's would, so that the edge answers them
    (503 for a lost server) and consumers retry them, as any other statement's.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    if not driver.is_in_transaction():
        await _begin(connection, raw.dbapi_connection)
    async with _driver_errors(connection):
        yield driver


async def _begin(connection: AsyncConnection, adapted: Any) -> None:
    """Begins the adapter's transaction on the server, as its first statement would.

    Through the adapter's own ``_start_transaction`` (one BEGIN, which the adapter then commits
    or rolls back) rather than a statement run for the purpose: that would cost a round trip
    and SQLAlchemy's handling of a statement besides the BEGIN, on every batch a consumer
    applies. Should a later SQLAlchemy drop that method, a statement still does it.
    """
    start = getattr(adapted, "_start_transaction", None)
    mutex = getattr(adapted, "_execute_mutex", None)
    if start is None or mutex is None or getattr(adapted, "_transaction", False) is not None:
        await connection.exec_driver_sql("SELECT 1")
        if not adapted.driver_connection.is_in_transaction():
            # Statements meant for one transaction would each commit on their own.
            raise RuntimeError("the statement meant to begin a transaction began none")
        return
    async with _driver_errors(connection), mutex:
        try:
            await start()
        except Exception as exc:
            # The adapter raised its own translation of the driver's error; the driver's
            # own is answered as any other statement's (a lost server invalidates).
            cause = exc.__cause__
            raise (cause if isinstance(cause, Exception) else exc) from None


@asynccontextmanager
async def _driver_errors(connection: AsyncConnection) -> AsyncIterator[None]:
    """The driver's errors as SQLAlchemy raises them, so that callers handle both alike.

    A connection left in an unknown state (lost, or a statement cancelled half-way) is
    invalidated, so the pool never lends it out again; the server's refusals (a constraint, a
    bad value) leave it usable, and the caller's own exceptions pass through untouched.
    """
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(None, None, exc, hide_parameters=True) from exc
    except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
            asyncpg.InternalClientError, OSError) as exc:
        # InternalClientError: the driver found the connection still busy with an operation
        # that never finished (its server stopped answering mid-way): as unusable as a lost one.
        # OSError includes TimeoutError: the driver gave up waiting (``Database.connect``).
        # Closed at once, as ``_given_up`` does: a polite close would wait on the server.
        await _drop(connection)
        raise OperationalError(None, None, exc, hide_parameters=True,
                               connection_invalidated=True) from exc
    except asyncpg.PostgresError as exc:
        raise DBAPIError(None, None, exc, hide_parameters=True) from exc
    except asyncio.CancelledError:
        await asyncio.shield(_drop(connection))
        raise


async def _drop(connection: AsyncConnection) -> None:
    """Closes the connection without a word to the server (which may not answer one) and has
    the pool forget it."""
    with contextlib.suppress(Exception):
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        driver.terminate()
    await connection.invalidate()


async def ended_session(driver: asyncpg.Connection, pid: int, *, within: float) -> bool:
    """Ends the server's session ``pid`` (a connection given up on) and tells whether it is
    over: its transaction then committed or rolled back for good, and what it wrote can be
    looked for. False when it still ran after ``within`` seconds."""
    # Two statements: the look must follow the end (one statement may evaluate it first).
    # False from the first says the session had ended already, or still runs: the look tells.
    await driver.fetchval("SELECT pg_terminate_backend($1, $2)", pid,
                          max(1, round(within * 1000)))
    return bool(await driver.fetchval(
        "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid))


def database_of(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def _database(request: Request) -> Database:
    return database_of(request)


# A coroutine: FastAPI would run a plain function in a thread, which costs more than the look-up.
DatabaseDep = Annotated[Database, Depends(_database)]


async def get_session(database: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async with database.transaction() as session:
        yield session


# scope="function": the commit runs when the endpoint returns, before the response leaves,
# so a client never sees a 201 for something that was not committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
