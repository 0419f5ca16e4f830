"""SQL of the metrics service: monthly figures from the counts the projection keeps
(``metrics_worker.counts``; a summary reads them through ``metrics_worker.figures``), targets
and the office's time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg
from sqlalchemy import Row, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import counts
from metrics_worker.models import Target

# The contacts, received, registered and closed measures of a grouping (received ``None`` for
# kinds: see ``monthly_counts``).
MonthlyMeasures = tuple[str, str | None, str, str]


async def _rows(session: AsyncSession, sql: str, params: dict[str, Any]) -> Sequence[Row[Any]]:
    return (await session.execute(text(sql), params)).all()


async def monthly_counts(connection: asyncpg.Connection, first: date, last: date,
                         measures: MonthlyMeasures, grouped: bool,
                         report_kinds: Sequence[str]) -> list[asyncpg.Record]:
    """``(month, grp, contacts, received, registered, closed)`` by local month and group (the
    counts' key, or '' when not ``grouped``) in ``[first, last]``, summed from the month and
    day rows the projection keeps: one row per month and group with a count. ``measures`` are
    the contacts, received, registered and closed measures of the grouping; received ``None``
    for kinds, whose received reports are the contacts of ``report_kinds``."""
    contacts, received, registered, closed = measures
    received_filter = (f"measure = '{received}'" if received is not None else
                       f"measure = '{contacts}' AND key IN ({_listed(report_kinds)})")
    wanted = [m for m in measures if m is not None]

    def total(condition: str) -> str:
        return f"coalesce(sum(n) FILTER (WHERE {condition}), 0)::bigint"

    rows: list[asyncpg.Record] = await connection.fetch(f"""
        SELECT to_char(month, 'YYYY-MM'), grp, contacts, received, registered, closed FROM (
          SELECT month, {"key" if grouped else "''"} AS grp,
                 {total(f"measure = '{contacts}'")} AS contacts,
                 {total(received_filter)} AS received,
                 {total(f"measure = '{registered}'")} AS registered,
                 {total(f"measure = '{closed}'")} AS closed
          FROM ({counts.months_sql(first, last, wanted)}) c GROUP BY 1, 2) m""")
    return rows


async def monthly_groups(connection: asyncpg.Connection, first: date, last: date,
                         measures: Sequence[str]) -> list[str]:
    """The keys counted in ``[first, last]`` by any of ``measures``, in order: found before
    any month's row is read (a few rows per year, month and loose day)."""
    return sorted(row[0] for row in await connection.fetch(
        counts.keys_sql(first, last, measures)))


def _listed(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


async def get_target(session: AsyncSession, period: str) -> Target | None:
    return await session.get(Target, period)


async def put_target(session: AsyncSession, period: str, closures: int | None,
                     examination_closures: int | None, by: str) -> Target:
    """Sets the period's targets and returns them as stored (``updated_at`` from the server)."""
    stored = await session.execute(
        pg_insert(Target)
        .values(period=period, closures=closures, examination_closures=examination_closures,
                updated_by=by)
        .on_conflict_do_update(index_elements=[Target.period], set_={
            "closures": closures, "examination_closures": examination_closures,
            "updated_by": by, "updated_at": text("now()")})
        .returning(Target)
        .execution_options(populate_existing=True)
    )
    return stored.scalar_one()


async def set_office_timezone(session: AsyncSession, zone: str) -> None:
    """The BI views compute local dates with the zone the service runs with."""
    await session.execute(text("UPDATE metrics.office SET timezone = :zone"), {"zone": zone})
