"""Daily counts: running totals the projection keeps, so summaries never scan every case.

Each row says how much a measure grew on one local day for one key. Counts over a period are
sums over its days; "open at a moment" is "received before it" minus "closed before it", and
"in status X at a moment" is "entered X before it" minus "left X before it". Because reporting
periods start and end at local midnight, per-day rows give exact answers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

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
    """Adds one to each (moment, measure, key), on the moment's local day."""
    if not increments:
        return
    rows = ", ".join(
        f"((CAST(:at{i} AS timestamptz) AT TIME ZONE metrics.office_timezone())::date,"
        f" :measure{i}, :key{i}, 1)"
        for i in range(len(increments)))
    params: dict[str, object] = {}
    for i, (at, measure, key) in enumerate(increments):
        params.update({f"at{i}": at, f"measure{i}": measure, f"key{i}": key})
    await session.execute(text(
        f"INSERT INTO metrics.daily_counts (day, measure, key, n) VALUES {rows} "
        "ON CONFLICT (day, measure, key) DO UPDATE SET n = daily_counts.n + EXCLUDED.n"
    ), params)


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
    result = Totals()
    within = await session.execute(text("""
        SELECT measure, key, to_char(day, 'YYYY-MM') AS month, sum(n) AS n
        FROM metrics.daily_counts WHERE day BETWEEN :first AND :last
        GROUP BY 1, 2, 3"""), {"first": first, "last": last})
    for row in within:
        bucket = result.within[row.measure]
        bucket[row.key] = bucket.get(row.key, 0) + int(row.n)
        if row.measure == RECEIVED_SUBSTANCE:
            month = result.by_month[row.month]
            month[row.key] = month.get(row.key, 0) + int(row.n)
    running = await session.execute(text("""
        SELECT measure, key,
               coalesce(sum(n) FILTER (WHERE day < :first), 0) AS before_start,
               sum(n) AS through_end
        FROM metrics.daily_counts
        WHERE measure = ANY(:measures) AND day <= :last
        GROUP BY 1, 2"""), {"first": first, "last": last, "measures": list(RUNNING)})
    for row in running:
        result.before_start[row.measure][row.key] = int(row.before_start)
        result.through_end[row.measure][row.key] = int(row.through_end)
    return result
