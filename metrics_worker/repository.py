"""SQL of the metrics service: monthly figures from the counts the projection keeps
(``metrics_worker.counts``; a summary reads them through ``metrics_worker.figures``), targets
and the office's time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import counts
from metrics_worker.models import Target


async def _rows(session: AsyncSession, sql: str, params: dict[str, Any]) -> Sequence[Row[Any]]:
    return (await session.execute(text(sql), params)).all()


async def monthly_counts(session: AsyncSession, first: date, last: date,
                         measures: Sequence[str]) -> Sequence[Row[Any]]:
    """``(month, measure, key, n)``: the counts of ``measures`` in ``[first, last]`` by local
    month, summed from the month and day rows the projection keeps."""
    return await _rows(session, f"""
        SELECT month, measure, key, sum(n) AS n
        FROM ({counts.months_sql(first, last, measures)}) c GROUP BY 1, 2, 3""", {})


async def monthly_groups(session: AsyncSession, first: date, last: date,
                         measures: Sequence[str]) -> list[str]:
    """The keys counted in ``[first, last]`` by any of ``measures``, in order: found before
    any month's row is read (a few rows per year, month and loose day)."""
    found = await session.execute(text(counts.keys_sql(first, last, measures)))
    return sorted(found.scalars())


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
