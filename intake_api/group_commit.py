"""Complaints posted at the same time, recorded together: group commit.

Each complaint is one statement of its own when it is alone (``service.record``). Under load,
the complaints of concurrent requests that arrive while a write is under way wait for the next
one, and go in it together: their numbers drawn in one round trip, their rows and events
written by one statement, committed once. A quiet server writes each complaint at once (a
group of one); a busy one writes fewer, larger groups, so the cost of a round trip, of a
statement and of a commit is shared by all of a group's complaints.

A group is one statement, so it is written whole or not at all. Should it fail, each of its
complaints is written again alone, so one complaint the database refuses never takes its
neighbours with it. A complaint whose external reference its partner already used is not
written and its requester is told (``ON CONFLICT``), as when alone. Every requester is answered
only once the statement that wrote its complaint has returned: a 201 still means committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request

from intake_api import repository
from intake_api.schemas import ComplaintCreated
from shared import outbox, tracing
from shared.db import Database, database_of
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

# What a complaint is, once its number is known: its row, its event, the answer.
Written = tuple[dict[str, Any], outbox.OutboxRow, ComplaintCreated]
Write = Callable[[str, Mapping[str, str] | None], Written]


@dataclass
class _Entry:
    year: int
    write: Write
    carrier: Mapping[str, str] | None
    answer: asyncio.Future[tuple[ComplaintCreated, bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    def __init__(self, database: Database, *, largest: int = 100) -> None:
        self.database = database
        self.largest = largest
        self.waiting: list[_Entry] = []
        self.writers: set[asyncio.Task[None]] = set()
        # Set when a complaint joins the waiting list: lingering writers write it.
        self.arrived = asyncio.Event()

    async def record(self, year: int, write: Write) -> tuple[ComplaintCreated, bool]:
        """Records the complaint ``write`` makes of its tracking number (drawn in ``year``'s
        register); the answer, and False when its external reference was used already."""
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
                        while await self._more():
                            group = self._next_group()
                            await self._write(driver, group)
                            group = []
                except Exception as exc:
                    # The group it was writing (or, when no connection could be had, the
                    # next one) is written again complaint by complaint, each on a pooled
                    # connection of its own.
                    group = group or self._next_group()
                    await self._write_alone(group, exc)
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
        if not self.waiting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINGER_SECONDS):
                    # Woken with the other writer, which took the complaint first: it lingers
                    # on rather than give its connection back.
                    while not self.waiting:
                        self.arrived.clear()
                        await self.arrived.wait()
        return bool(self.waiting)

    def _next_group(self) -> list[_Entry]:
        group, self.waiting = self.waiting[:self.largest], self.waiting[self.largest:]
        return group

    async def _write_alone(self, group: list[_Entry], exc: Exception) -> None:
        if len(group) == 1:
            _fail(group[0], exc)
            return
        logger.warning("a group of %d complaints was refused (%s); writing each alone",
                       len(group), type(exc).__name__)
        for entry in group:
            try:
                async with self.database.autocommit() as driver:
                    await self._write(driver, [entry])
            except Exception as alone:
                _fail(entry, alone)

    async def _write(self, driver: asyncpg.Connection, group: list[_Entry]) -> None:
        numbers = await repository.next_tracking_numbers(driver, [entry.year for entry in group])
        written = [entry.write(number, entry.carrier)
                   for entry, number in zip(group, numbers, strict=True)]
        recorded = await repository.record_complaints(
            driver, [values for values, _, _ in written], [event for _, event, _ in written])
        self.database.announce(INTAKE_EVENTS.schema)
        for entry, (values, _, out) in zip(group, written, strict=True):
            if not entry.answer.done():
                entry.answer.set_result((out, values["id"] in recorded))


def _fail(entry: _Entry, exc: Exception) -> None:
    if not entry.answer.done():
        entry.answer.set_exception(exc)


def group_commit_of(request: Request) -> GroupCommit:
    """The process's group commit (made on first use: each HTTP worker has its own)."""
    group: GroupCommit | None = getattr(request.app.state, "group_commit", None)
    if group is None:
        group = GroupCommit(database_of(request),
                            largest=runtime_of(request).settings.intake_group_largest)
        request.app.state.group_commit = group
    return group


async def _group_commit(request: Request) -> GroupCommit:
    return group_commit_of(request)


GroupCommitDep = Annotated[GroupCommit, Depends(_group_commit)]
