"""Complaints posted at the same time, recorded together: group commit.

Each complaint is one statement of its own when it is alone (``service.record``). Under load,
the complaints of concurrent requests that arrive while a write is under way wait for the next
one, and go in it together: their numbers drawn, their rows and events written by one
statement (one round trip), committed once. A quiet server writes each complaint at once (a
group of one); a busy one writes fewer, larger groups, so the cost of a round trip, of a
statement and of a commit is shared by all of a group's complaints.

A group is one statement in a transaction of its own (BEGIN, the statement, COMMIT), so it is
written whole or not at all. Should the database refuse it, each of its complaints is written
again alone, so one complaint the database refuses never takes its neighbours with it. A
complaint whose external reference its partner already used is not written and its requester
is told (``ON CONFLICT``), as when alone. Every requester is answered only once the COMMIT of
its complaint has been answered: a 201 still means committed.

A stalled database (``Database.connect(answer_within=...)``): the transaction keeps a 503 true.
A statement given up on before COMMIT was sent leaves nothing committed: its connection is
closed, and the server, resumed, finds the connection gone and rolls back; the requesters are
answered 503 (retry), and a retry records each complaint once. The group is not written again
alone then: that would hold each requester another wait. Only a COMMIT sent and unanswered is
truly in doubt (``_settle``): on a connection of its own, within one more wait, the server is
told to end the writer's session (its transaction is then committed or rolled back, for good)
and asked whether the complaints are there; they are answered 201 if they are, 503 (retry) if
not, and when the server does not answer that either, 503 ``outcome-unknown``, which tells the
partner to post again with an Idempotency-Key or the complaint's ``external_reference`` (which
finds the complaint if it was recorded) rather than as a new complaint. A single statement
committing on its own (autocommit) would save one or two round trips per group, but a client
told 503 could find its complaint recorded once the server resumed, and post it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy.exc import OperationalError

from intake_api import repository
from intake_api.schemas import ComplaintCreated
from shared import outbox, tracing
from shared.db import Database, database_of, ended_session
from shared.problems import Problem, is_given_up, outcome_unknown
from shared.runtime import runtime_of
from shared.tables import INTAKE_EVENTS

logger = logging.getLogger(__name__)

# Groups being written at once (each on a pooled connection of its own): while they are, the
# next group gathers. Two keeps a group gathering during the other's commit.
WRITERS = 2
# How long a writer keeps its connection once nobody is waiting: under a steady stream the next
# complaint comes within it, and taking a connection from the pool and giving it back (through
# SQLAlchemy's async adaptation) costs more than building a group of a few complaints' rows.
LINGER_SECONDS = 0.05

# How long the outcome of an unanswered COMMIT is looked for, on a database without a bound
# of its own for requests (``Database.answer_within``).
SETTLE_SECONDS = 5.0

# What a complaint is, written under the trace context of its request: its row, its event, the
# answer; each but its tracking number, which the statement writing it draws
# (``repository.record_complaints``).
Written = tuple[dict[str, Any], outbox.OutboxRow, ComplaintCreated]
Write = Callable[[Mapping[str, str] | None], Written]


@dataclass
class _Entry:
    year: int
    write: Write
    carrier: Mapping[str, str] | None
    answer: asyncio.Future[tuple[ComplaintCreated, str | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    def __init__(self, database: Database, *, largest: int = 100) -> None:
        self.database = database
        self.largest = largest
        self.waiting: list[_Entry] = []
        self.writers: set[asyncio.Task[None]] = set()
        # Set when a complaint joins the waiting list: lingering writers write it.
        self.arrived = asyncio.Event()
        self.closing = False

    async def close(self) -> None:
        """Lets lingering writers go now, with their connections, rather than ``LINGER_SECONDS``
        later (after the pool was closed); a writer with complaints to write writes them."""
        self.closing = True
        self.arrived.set()
        await asyncio.gather(*self.writers, return_exceptions=True)

    async def record(self, year: int, write: Write) -> tuple[ComplaintCreated, str | None]:
        """Records the complaint ``write`` makes, numbered in ``year``'s register; the answer
        (without its number) and the number, None when its external reference was used
        already."""
        entry = _Entry(year, write, tracing.current_carrier())
        self.waiting.append(entry)
        self.arrived.set()
        if len(self.writers) < WRITERS:
            task = asyncio.create_task(self._write_waiting())
            self.writers.add(task)
            task.add_done_callback(self.writers.discard)
        return await entry.answer

    async def _write_waiting(self) -> None:
        group: list[_Entry] = []
        try:
            while self.waiting:
                try:
                    # One pooled connection for as long as groups keep coming: a check-out
                    # and check-in through the pool cost about as much as building a
                    # complaint's rows, once per group otherwise.
                    async with self.database.autocommit() as driver:
                        # A connection the server closed while it lingered (a restart, an
                        # administrator) is left for a fresh one from the pool, which checks
                        # what it lends: the complaints waiting never met it.
                        while await self._more() and not driver.is_closed():
                            group = self._next_group()
                            await self._write(driver, group)
                            group = []
                except Exception as exc:
                    # The group it was writing is written again complaint by complaint, each
                    # on a pooled connection of its own. When the error came from taking or
                    # giving back a connection, the next group is, each complaint tried once.
                    tried, group = bool(group), group or self._next_group()
                    await self._write_alone(group, exc, tried=tried)
                    group = []
        except BaseException as exc:  # stopped half-way: nobody is left waiting for ever
            for entry in group:
                _fail(entry, exc if isinstance(exc, Exception)
                      else RuntimeError("the service is stopping"))
            raise
        finally:
            # Gone from the writers as soon as it found nobody waiting, not a turn of the
            # event loop later (its done callback): a complaint joining in between would
            # otherwise count it as writing and wait for nobody.
            self.writers.discard(asyncio.current_task())

    async def _more(self) -> bool:
        """Whether complaints wait, or come within ``LINGER_SECONDS``."""
        if not self.waiting and not self.closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER_SECONDS):
                    # Woken with the other writer, which took the complaint first: it lingers
                    # on rather than give its connection back.
                    while not self.waiting and not self.closing:
                        self.arrived.clear()
                        await self.arrived.wait()
        return bool(self.waiting)

    def _next_group(self) -> list[_Entry]:
        group, self.waiting = self.waiting[:self.largest], self.waiting[self.largest:]
        return group

    async def _write_alone(self, group: list[_Entry], exc: Exception, *, tried: bool) -> None:
        if (tried and len(group) == 1) or is_given_up(exc) or isinstance(exc, Problem):
            # The database did not answer in time (nothing was committed), or the outcome
            # was settled (``_settle``): each complaint written alone would wait as long again.
            for entry in group:
                _fail(entry, exc)
            return
        if tried:
            logger.warning("a group of %d complaints was refused (%s); writing each alone",
                           len(group), type(exc).__name__)
        for entry in group:
            try:
                async with self.database.autocommit() as driver:
                    await self._write(driver, [entry])
            except Exception as alone:
                _fail(entry, alone)

    async def _write(self, driver: asyncpg.Connection, group: list[_Entry]) -> None:
        written = [entry.write(entry.carrier) for entry in group]
        await driver.execute("BEGIN")
        try:
            numbers = await repository.record_complaints(
                driver, [entry.year for entry in group], [values for values, _, _ in written],
                [event for _, event, _ in written])
        except asyncpg.PostgresError:
            # Refused, or cancelled for running too long: the connection serves the next group.
            await driver.execute("ROLLBACK")
            raise
        try:
            await driver.execute("COMMIT")
        except (TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                OSError) as exc:
            await self._settle(driver, [values["id"] for values, _, _ in written], exc)
        self.database.announce(INTAKE_EVENTS.schema)
        for entry, (values, _, out) in zip(group, written, strict=True):
            if not entry.answer.done():
                entry.answer.set_result((out, numbers.get(values["id"])))

    async def _settle(self, driver: asyncpg.Connection, ids: list[uuid.UUID],
                      exc: Exception) -> None:
        """Returns when the group's COMMIT, sent but unanswered (``exc``), did commit; raises
        when it did not (the database was too slow: retry) or nobody could tell in time."""
        pid = driver.get_server_pid()
        driver.terminate()
        within = self.database.answer_within or SETTLE_SECONDS
        outcome: bool | None = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(within):
                connection = await asyncpg.connect(self.database.dsn, timeout=within)
                try:
                    if await ended_session(connection, pid, within=within):
                        # Any of them found, the group committed: the others were left out
                        # on purpose (an external_reference already stored), answered 409.
                        # None found, nothing of theirs was stored, whichever way it went.
                        outcome = await repository.count_complaints(connection, ids) > 0
                finally:
                    connection.terminate()
        if outcome is True:
            logger.warning("the commit of %d complaints went unanswered (%s); they were "
                           "recorded", len(ids), type(exc).__name__)
            return
        if outcome is False:
            raise OperationalError(None, None, exc, hide_parameters=True,
                                   connection_invalidated=True) from exc
        logger.warning("the commit of %d complaints went unanswered (%s) and the database "
                       "could not tell whether they were recorded: %s", len(ids),
                       type(exc).__name__, ", ".join(str(i) for i in ids))
        raise outcome_unknown("the complaint") from exc


def _fail(entry: _Entry, exc: Exception) -> None:
    if not entry.answer.done():
        entry.answer.set_exception(exc)


def group_commit_of(request: Request) -> GroupCommit:
    """The process's group commit (made on first use: each HTTP worker has its own)."""
    group: GroupCommit | None = getattr(request.app.state, "group_commit", None)
    if group is None:
        runtime = runtime_of(request)
        group = GroupCommit(database_of(request), largest=runtime.settings.intake_group_largest)
        runtime.closers.append(group.close)
        request.app.state.group_commit = group
    return group


async def _group_commit(request: Request) -> GroupCommit:
    return group_commit_of(request)


GroupCommitDep = Annotated[GroupCommit, Depends(_group_commit)]
