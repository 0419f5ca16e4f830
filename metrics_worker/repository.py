"""SQL of the metrics service over the fact rows: monthly figures and targets (a summary reads
the pre-aggregated rows instead, see ``metrics_worker.figures``).

``:s`` and ``:e`` are the period's bounds in UTC, ``[s, e)``; ``:tz`` is the office time zone.
A case is open at moment m when ``received_at <= m`` and not ``closed_at < m``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.models import Target
from shared.vocabulary import CASE_OPENING_KINDS

# The received reports of METRICS.md: the intakes that open a case.
REPORT_KINDS = tuple(sorted(kind.value for kind in CASE_OPENING_KINDS))
Bounds = dict[str, Any]


async def _rows(session: AsyncSession, sql: str, params: Bounds) -> Sequence[Row[Any]]:
    return (await session.execute(text(sql), params)).all()


async def monthly(session: AsyncSession, params: Bounds, group: str) -> Sequence[Row[Any]]:
    """Contacts, received, registered and closed by local month and one grouping column."""
    column = {"none": "''", "channel": "channel", "substance": "substance",
              "agency": "agency", "kind": "kind"}[group]
    return await _rows(session, f"""
        WITH contacts AS (
          SELECT to_char(received_at AT TIME ZONE :tz, 'YYYY-MM') AS month, {column} AS grp,
                 count(*) AS contacts,
                 count(*) FILTER (WHERE kind IN {REPORT_KINDS}) AS received
          FROM metrics.contacts WHERE received_at >= :s AND received_at < :e GROUP BY 1, 2),
        registered AS (
          SELECT to_char(t.at AT TIME ZONE :tz, 'YYYY-MM') AS month, {_qualified(column)} AS grp,
                 count(DISTINCT t.case_id) AS registered
          FROM metrics.transitions t JOIN metrics.cases c ON c.case_id = t.case_id
          WHERE t.action = 'register' AND t.at >= :s AND t.at < :e GROUP BY 1, 2),
        closed AS (
          SELECT to_char(closed_at AT TIME ZONE :tz, 'YYYY-MM') AS month, {column} AS grp,
                 count(*) AS closed
          FROM metrics.cases WHERE closed_at >= :s AND closed_at < :e GROUP BY 1, 2)
        SELECT coalesce(a.month, r.month, c.month) AS month,
               coalesce(a.grp, r.grp, c.grp) AS grp,
               coalesce(a.contacts, 0) AS contacts, coalesce(a.received, 0) AS received,
               coalesce(r.registered, 0) AS registered, coalesce(c.closed, 0) AS closed
        FROM contacts a
        FULL JOIN registered r ON r.month = a.month AND r.grp = a.grp
        FULL JOIN closed c ON c.month = coalesce(a.month, r.month)
                          AND c.grp = coalesce(a.grp, r.grp)""", params)


async def monthly_group_count(session: AsyncSession, params: Bounds, group: str) -> int:
    """How many groups ``monthly`` would answer for, counted before it builds any row."""
    column = {"channel": "channel", "substance": "substance", "agency": "agency",
              "kind": "kind"}[group]
    return int((await session.execute(text(f"""
        SELECT count(*) FROM (
          SELECT {column} FROM metrics.contacts WHERE received_at >= :s AND received_at < :e
          UNION
          SELECT {column} FROM metrics.cases WHERE closed_at >= :s AND closed_at < :e
          UNION
          SELECT c.{column} FROM metrics.transitions t JOIN metrics.cases c
            ON c.case_id = t.case_id
          WHERE t.action = 'register' AND t.at >= :s AND t.at < :e) AS groups"""),
        params)).scalar_one())


def _qualified(column: str) -> str:
    return column if column == "''" else f"c.{column}"


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
