"""SQL of the case service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, Table, and_, func, literal_column, not_, select
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from case_api.models import Agency, Case, Transition
from case_api.workflow import Status


async def get(session: AsyncSession, case_id: uuid.UUID, *,
              for_update: bool = False) -> Case | None:
    query = select(Case).where(Case.id == case_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def history(session: AsyncSession, case_id: uuid.UUID) -> Sequence[Transition]:
    query = select(Transition).where(Transition.case_id == case_id).order_by(Transition.version)
    return (await session.execute(query)).scalars().all()


async def histories(session: AsyncSession,
                    case_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Transition]]:
    """The histories of a page of cases in one query, each in version order."""
    found: dict[uuid.UUID, list[Transition]] = {case_id: [] for case_id in case_ids}
    if not case_ids:
        return found
    query = (select(Transition).where(Transition.case_id.in_(case_ids))
             .order_by(Transition.case_id, Transition.version))
    for entry in (await session.execute(query)).scalars():
        found[entry.case_id].append(entry)
    return found


async def insert_cases(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Inserts the cases not there yet, in one statement; returns the ids inserted now."""
    if not rows:
        return set()
    table = Case.__table__
    assert isinstance(table, Table)
    result = await session.execute(
        pg_insert(table).on_conflict_do_nothing().returning(table.c.id), list(rows))
    return set(result.scalars())


def _count_agencies() -> Insert:
    table = Agency.__table__
    assert isinstance(table, Table)
    insert = pg_insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.code],
        set_={"complaints": table.c.complaints + insert.excluded.complaints})


# Executed with a list of rows: compiled once (``.values(rows)`` would compile every batch).
_COUNT_AGENCIES = _count_agencies()


async def see_agencies(session: AsyncSession,
                       sightings: Sequence[tuple[str, str, datetime]]) -> None:
    """Counts a complaint against its agency for each (code, name, at); an agency's name is
    taken from its first sighting only, so that no partner renames an agency for everyone
    (staff name it: ``name_agency``). One row per agency in one statement, in the order of the
    codes, so that concurrent consumers lock agencies in one order."""
    counted: dict[str, tuple[str, datetime, int]] = {}
    for code, name, at in sightings:
        first = counted.get(code)
        counted[code] = (name, at, 1) if first is None else (first[0], first[1], first[2] + 1)
    if not counted:
        return
    await session.execute(_COUNT_AGENCIES, [
        {"code": code, "name": name, "first_seen_at": at, "complaints": n}
        for code, (name, at, n) in sorted(counted.items())])


async def move_complaint(session: AsyncSession, old: tuple[str, str],
                         new: tuple[str, str, datetime]) -> None:
    """A complaint counted against the agency ``new`` (code, name, at) instead of ``old``
    (code, name); the new agency is named as a first sighting names it (``see_agencies``).
    Both rows in one statement in the order of the codes, as ``see_agencies`` locks them: in
    any other order a consumer counting the same two agencies deadlocks with it."""
    (old_code, old_name), (code, name, at) = old, new
    if old_code == code:
        return
    await session.execute(_COUNT_AGENCIES, sorted([
        {"code": old_code, "name": old_name, "first_seen_at": at, "complaints": -1},
        {"code": code, "name": name, "first_seen_at": at, "complaints": 1},
    ], key=lambda row: str(row["code"])))


async def name_agency(session: AsyncSession, code: str, name: str, at: datetime) -> bool:
    """Sets the agency's name, registering the agency when unseen; True when registered now."""
    # xmax is 0 on a row this statement inserted, not on one it updated.
    inserted: bool = (await session.execute(
        pg_insert(Agency)
        .values(code=code, name=name, first_seen_at=at, complaints=0)
        .on_conflict_do_update(index_elements=[Agency.code], set_={"name": name})
        .returning(literal_column("xmax = 0"))
    )).scalar_one()
    return inserted


async def page(session: AsyncSession, *, status: str | None, agency: str | None,
               assignee: str | None, overdue: bool | None, now: datetime,
               before_seq: int | None, limit: int) -> Sequence[Case]:
    """One page, newest first; ``overdue`` filters in SQL so that pages stay full."""
    query = select(Case).order_by(Case.seq.desc()).limit(limit)
    if status is not None:
        query = query.where(Case.status == status)
    if agency is not None:
        query = query.where(Case.reported_agency_code == agency)
    if assignee is not None:
        query = query.where(Case.assignee == assignee)
    is_overdue = and_(Case.status != Status.closed.value, Case.due_at.is_not(None),
                      Case.due_at < now)
    if overdue is True:
        query = query.where(is_overdue)
    elif overdue is False:
        query = query.where(not_(is_overdue))
    if before_seq is not None:
        query = query.where(Case.seq < before_seq)
    return (await session.execute(query)).scalars().all()


async def expired_awaiting_completion(session: AsyncSession, now: datetime,
                                      limit: int = 100) -> Sequence[Case]:
    """Cases past their completion deadline, locked; rows another process holds are skipped."""
    query = (
        select(Case)
        .where(Case.status == Status.awaiting_completion.value, Case.due_at < now)
        .order_by(Case.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).scalars().all()


def _agency_counts() -> Select[str, str, int, int, int]:
    open_cases = func.count(Case.id).filter(Case.status != Status.closed.value)
    return (
        select(Agency.code, Agency.name, Agency.complaints,
               func.coalesce(open_cases, 0).label("open_cases"),
               func.count(Case.id).label("total_cases"))
        .outerjoin(Case, Case.reported_agency_code == Agency.code)
        .group_by(Agency.code)
    )


# code, name, open_cases, total_cases, complaints
AgencyRow = Row[str, str, int, int, int]


async def agencies(session: AsyncSession, *, only: str | None, after: str | None,
                   limit: int) -> Sequence[AgencyRow]:
    query = _agency_counts().order_by(Agency.code).limit(limit)
    if only is not None:
        query = query.where(Agency.code == only)
    if after is not None:
        query = query.where(Agency.code > after)
    return (await session.execute(query)).all()

