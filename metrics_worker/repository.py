"""SQL of the metrics service: every figure of METRICS.md as one query over the read model.

``:s`` and ``:e`` are the period's bounds in UTC, ``[s, e)``; ``:tz`` is the office time zone.
A case is open at moment m when ``received_at <= m`` and not ``closed_at < m``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.models import Target

REPORT_KINDS = ("report", "rapid_response", "own_initiative")
Bounds = dict[str, Any]


async def _rows(session: AsyncSession, sql: str, params: Bounds) -> Sequence[Row[Any]]:
    return (await session.execute(text(sql), params)).all()


async def as_of(session: AsyncSession) -> datetime | None:
    row = (await session.execute(text(
        "SELECT greatest((SELECT max(received_at) FROM metrics.contacts),"
        " (SELECT max(at) FROM metrics.transitions))"
    ))).scalar_one()
    return row  # type: ignore[no-any-return]


async def contacts_grouped(session: AsyncSession, params: Bounds) -> Sequence[Row[Any]]:
    """Intakes in the period by kind, local month, channel, substance and agency."""
    return await _rows(session, """
        SELECT kind, to_char(received_at AT TIME ZONE :tz, 'YYYY-MM') AS month,
               channel, substance, agency, count(*) AS n
        FROM metrics.contacts
        WHERE received_at >= :s AND received_at < :e
        GROUP BY 1, 2, 3, 4, 5""", params)


async def on_the_spot_locations(session: AsyncSession, params: Bounds) -> int:
    return int((await session.execute(text("""
        SELECT count(DISTINCT place) FROM metrics.contacts
        WHERE channel = 'on_the_spot' AND place IS NOT NULL
          AND received_at >= :s AND received_at < :e"""), params)).scalar_one())


async def registered(session: AsyncSession, params: Bounds) -> int:
    return int((await session.execute(text("""
        SELECT count(DISTINCT case_id) FROM metrics.transitions
        WHERE action = 'register' AND at >= :s AND at < :e"""), params)).scalar_one())


async def case_figures(session: AsyncSession, params: Bounds) -> Row[Any]:
    row = (await session.execute(text("""
        SELECT
          count(*) FILTER (WHERE received_at < :e AND (closed_at IS NULL OR closed_at >= :s))
            AS handled,
          count(*) FILTER (WHERE closed_at >= :s AND closed_at < :e) AS closed,
          count(*) FILTER (WHERE closed_at >= :s AND closed_at < :e
                             AND closure_stage IN ('examination', 'resolution'))
            AS examination_closed
        FROM metrics.cases
        WHERE received_at < :e AND (closed_at IS NULL OR closed_at >= :s)"""), params)).one()
    return row


async def carried_over_by_year(session: AsyncSession, params: Bounds) -> Sequence[Row[Any]]:
    return await _rows(session, """
        SELECT extract(year FROM received_at AT TIME ZONE :tz)::int AS year, count(*) AS n
        FROM metrics.cases
        WHERE received_at < :s AND (closed_at IS NULL OR closed_at >= :s)
        GROUP BY 1 ORDER BY 1""", params)


async def examination_by_year(session: AsyncSession, params: Bounds) -> Sequence[Row[Any]]:
    return await _rows(session, """
        SELECT extract(year FROM received_at AT TIME ZONE :tz)::int AS year, count(*) AS n
        FROM metrics.cases
        WHERE examination_at IS NOT NULL AND examination_at < :e
          AND (closed_at IS NULL OR closed_at >= :s)
        GROUP BY 1 ORDER BY 1""", params)


async def closed_by(session: AsyncSession, params: Bounds) -> Sequence[Row[Any]]:
    return await _rows(session, """
        SELECT closure_stage, closure_reason, count(*) AS n,
               percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM closed_at - received_at) / 86400.0) AS median_days
        FROM metrics.cases
        WHERE closed_at >= :s AND closed_at < :e
        GROUP BY GROUPING SETS ((closure_stage), (closure_reason))""", params)


async def backlog_at_end(session: AsyncSession, params: Bounds) -> Sequence[Row[Any]]:
    """Open cases at the last moment of the period, by the status they had then."""
    return await _rows(session, """
        SELECT coalesce(last.to_status, c.opened_status) AS status, count(*) AS n
        FROM metrics.cases c
        LEFT JOIN LATERAL (
          SELECT t.to_status FROM metrics.transitions t
          WHERE t.case_id = c.case_id AND t.at < :e
          ORDER BY t.version DESC LIMIT 1) last ON true
        WHERE c.received_at < :e AND (c.closed_at IS NULL OR c.closed_at >= :e)
        GROUP BY 1""", params)


async def liaison(session: AsyncSession, params: Bounds) -> Sequence[Row[Any]]:
    """Per agency asked for clarification in the period: requests, responses and timing."""
    return await _rows(session, """
        WITH asked AS (
          SELECT agency, count(*) AS requests FROM metrics.transitions
          WHERE action = 'request_clarification' AND at >= :s AND at < :e
          GROUP BY agency),
        answered AS (
          SELECT r.agency, count(*) AS responses,
                 percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM r.at - q.at) / 3600.0) AS median_hours
          FROM metrics.transitions r
          JOIN metrics.transitions q ON q.case_id = r.case_id AND q.version = r.version - 1
                                    AND q.action = 'request_clarification'
          WHERE r.action = 'respond' AND r.at >= :s AND r.at < :e
          GROUP BY r.agency),
        overdue AS (
          SELECT c.agency, count(*) AS overdue_at_end
          FROM metrics.cases c
          JOIN LATERAL (
            SELECT t.to_status, t.due_at FROM metrics.transitions t
            WHERE t.case_id = c.case_id AND t.at < :e
            ORDER BY t.version DESC LIMIT 1) last ON true
          WHERE last.to_status = 'awaiting_agency' AND last.due_at < :e
            AND c.agency IN (SELECT agency FROM asked)
          GROUP BY c.agency)
        SELECT a.agency, a.requests, coalesce(b.responses, 0) AS responses, b.median_hours,
               coalesce(o.overdue_at_end, 0) AS overdue_at_end
        FROM asked a
        LEFT JOIN answered b ON b.agency = a.agency
        LEFT JOIN overdue o ON o.agency = a.agency
        ORDER BY a.agency""", params)


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


def _qualified(column: str) -> str:
    return column if column == "''" else f"c.{column}"


async def get_target(session: AsyncSession, period: str) -> Target | None:
    return await session.get(Target, period)


async def put_target(session: AsyncSession, period: str, closures: int | None,
                     examination_closures: int | None, by: str) -> None:
    await session.execute(
        pg_insert(Target)
        .values(period=period, closures=closures, examination_closures=examination_closures,
                updated_by=by)
        .on_conflict_do_update(index_elements=[Target.period], set_={
            "closures": closures, "examination_closures": examination_closures,
            "updated_by": by, "updated_at": text("now()")})
    )


async def set_office_timezone(session: AsyncSession, zone: str) -> None:
    """The BI views compute local dates with the zone the service runs with."""
    await session.execute(text("UPDATE metrics.office SET timezone = :zone"), {"zone": zone})
