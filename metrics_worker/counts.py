"""Daily counts: running totals the projection keeps, so summaries never scan every case.

Each row says how much a measure grew on one local day for one key. Counts over a period are
sums over its days; "open at a moment" is "received before it" minus "closed before it", and
"in status X at a moment" is "entered X before it" minus "left X before it". Because reporting
periods start and end at local midnight, per-day rows give exact answers. The same sums are kept
by month and by year (``metrics.period_counts``), so a period of any length, and everything
before it, is read from a bounded number of rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.calendar import Span, spans, until

CONTACTS = "contacts"                      # key: kind
RECEIVED_CHANNEL = "received_channel"      # key: channel (received reports only)
RECEIVED_SUBSTANCE = "received_substance"  # key: substance
RECEIVED_AGENCY = "received_agency"        # key: agency code
OPENED = "opened"                          # key: year received (cases)
REGISTERED = "registered"                  # key: ""
EXAMINED = "examined"                      # key: year received; first entry to examination
CLOSED = "closed"                          # key: year received
CLOSED_EXAMINED = "closed_examined"        # key: year received; closed after examination
CLOSED_STAGE = "closed_stage"              # key: closure stage
CLOSED_REASON = "closed_reason"            # key: closure reason
STATUS_IN = "status_in"                    # key: status entered (open statuses)
STATUS_OUT = "status_out"                  # key: status left

# Measures whose totals before a moment are needed ("open at a moment" figures).
RUNNING = (OPENED, EXAMINED, CLOSED, CLOSED_EXAMINED, STATUS_IN, STATUS_OUT)

Increment = tuple[datetime, str, str]


async def add(session: AsyncSession, increments: Sequence[Increment]) -> None:
    """Adds one to each (moment, measure, key), on the moment's local day, month and year."""
    if not increments:
        return
    rows = ", ".join(
        f"((CAST(:at{i} AS timestamptz) AT TIME ZONE metrics.office_timezone())::date,"
        f" CAST(:measure{i} AS varchar), CAST(:key{i} AS varchar))"
        for i in range(len(increments)))
    params: dict[str, object] = {}
    for i, (at, measure, key) in enumerate(increments):
        params.update({f"at{i}": at, f"measure{i}": measure, f"key{i}": key})
    await session.execute(text(f"""
        WITH increments (day, measure, key) AS (VALUES {rows}),
        daily AS (
          INSERT INTO metrics.daily_counts (day, measure, key, n)
          SELECT day, measure, key, count(*) FROM increments GROUP BY 1, 2, 3
          ON CONFLICT (day, measure, key) DO UPDATE SET n = daily_counts.n + EXCLUDED.n)
        INSERT INTO metrics.period_counts (grain, start, measure, key, n)
        SELECT g.grain, date_trunc(g.unit, i.day)::date, i.measure, i.key, count(*)
        FROM increments i CROSS JOIN (VALUES ('m', 'month'), ('y', 'year')) AS g (grain, unit)
        GROUP BY 1, 2, 3, 4
        ON CONFLICT (grain, start, measure, key) DO UPDATE SET n = period_counts.n + EXCLUDED.n
        """), params)


def spans_sql(spans: Sequence[Span], name: str, params: dict[str, object]) -> str:
    """One ``SELECT measure, key, n`` per span, from the table of its grain, UNION ALL'ed."""
    parts = []
    for i, span in enumerate(spans):
        first, last = f"{name}_first{i}", f"{name}_last{i}"
        params.update({first: span.first, last: span.last})
        if span.grain == "d":
            parts.append(f"SELECT measure, key, n FROM metrics.daily_counts "
                         f"WHERE day BETWEEN :{first} AND :{last}")
        else:
            parts.append(f"SELECT measure, key, n FROM metrics.period_counts "
                         f"WHERE grain = '{span.grain}' AND start BETWEEN :{first} AND :{last}")
    return " UNION ALL ".join(parts) or "SELECT NULL::text, NULL::text, 0::bigint WHERE false"


@dataclass
class Totals:
    """Sums of the daily counts for a period ``[first, last]``."""

    within: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    before_start: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    through_end: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    by_month: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def total(self, part: dict[str, dict[str, int]], measure: str) -> int:
        return sum(part.get(measure, {}).values())


async def totals(session: AsyncSession, first: date, last: date) -> Totals:
    """A bounded number of rows whatever the period's length (see ``metrics_worker.calendar``)."""
    result = Totals()
    params: dict[str, object] = {"measures": list(RUNNING)}
    within = spans_sql(spans(first, last), "w", params)
    before = spans_sql(until(first), "b", params)
    rows = await session.execute(text(f"""
        SELECT 'within' AS part, measure, key, sum(n) AS n FROM ({within}) w GROUP BY 1, 2, 3
        UNION ALL
        SELECT 'before', measure, key, sum(n) FROM ({before}) b
        WHERE measure = ANY(:measures) GROUP BY 1, 2, 3"""), params)
    for row in rows:
        part = result.within if row.part == "within" else result.before_start
        part[row.measure][row.key] = int(row.n)
    for measure in RUNNING:
        before_start = result.before_start.get(measure, {})
        within_period = result.within.get(measure, {})
        result.through_end[measure] = {
            key: before_start.get(key, 0) + within_period.get(key, 0)
            for key in {*before_start, *within_period}}
    await _substances_by_month(session, first, last, result)
    return result


async def _substances_by_month(session: AsyncSession, first: date, last: date,
                               result: Totals) -> None:
    """Received by month and substance: month rows, and days for a month cut by the period."""
    params: dict[str, object] = {"measure": RECEIVED_SUBSTANCE}
    parts = []
    for i, span in enumerate(spans(first, last)):
        # Whole years are read as their months (kept too), since months are wanted here.
        final = date(span.last.year, 12, 1) if span.grain == "y" else span.last
        params.update({f"first{i}": span.first, f"last{i}": final})
        if span.grain == "d":
            parts.append(f"SELECT date_trunc('month', day)::date AS month, key, n "
                         f"FROM metrics.daily_counts WHERE measure = :measure "
                         f"AND day BETWEEN :first{i} AND :last{i}")
        else:
            parts.append(f"SELECT start AS month, key, n FROM metrics.period_counts "
                         f"WHERE grain = 'm' AND measure = :measure "
                         f"AND start BETWEEN :first{i} AND :last{i}")
    if not parts:
        return
    rows = await session.execute(text(
        f"SELECT to_char(month, 'YYYY-MM') AS month, key, sum(n) AS n "
        f"FROM ({' UNION ALL '.join(parts)}) m GROUP BY 1, 2"), params)
    for row in rows:
        result.by_month[row.month][row.key] = int(row.n)
