"""Everything a summary reads from the pre-aggregated read model, in one statement.

Counts (``metrics_worker.counts``), the middle values of the duration histograms
(``metrics_worker.histograms``), the newest event's time and the period's targets come back as
rows of one round trip, a few hundred rows whatever the period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from metrics_worker import counts, histograms
from metrics_worker.periods import Period


@dataclass
class Figures:
    totals: counts.Totals = field(default_factory=counts.Totals)
    middles: histograms.MiddleValues = field(default_factory=histograms.MiddleValues)
    as_of: datetime | None = None
    targets: dict[str, int | None] | None = None  # None: no target set for the period


async def read(connection: asyncpg.Connection, period: Period, start: datetime,
               end: datetime) -> Figures:
    """``start`` and ``end``: the period's bounds in UTC. On the driver: one statement, so
    one snapshot even outside a transaction, and its few hundred rows cost little to take."""
    result = Figures()
    # The period's bounds are written into the statement, not bound: the plan PostgreSQL keeps
    # for the driver's prepared statement after a few runs would otherwise be a generic one,
    # blind to whether the bounds select a day or eight years. Planned once per period and
    # connection, then reused.
    rows = await connection.fetch(f"""
        SELECT part, measure, key, NULL::integer AS hours, n::bigint,
               NULL::double precision AS value, NULL::timestamptz AS at
        FROM ({counts.parts_sql(period.first, period.last)}) c
        UNION ALL
        SELECT 'median', measure, key, hours, total, value, NULL
        FROM ({histograms.medians_sql(period.first, period.last, start, end)}) h
        UNION ALL
        -- The newest effective time of every kind of event that changes a figure: a
        -- contact's and a case's receipt, a step's and an assignment's time.
        SELECT 'as_of', NULL, NULL, NULL, NULL, NULL,
               greatest((SELECT max(received_at) FROM metrics.contacts),
                        (SELECT max(received_at) FROM metrics.cases),
                        (SELECT max(at) FROM metrics.transitions),
                        (SELECT max(at) FROM metrics.assignments))
        UNION ALL
        SELECT 'target', t.figure, NULL, NULL, t.n, NULL, NULL
        FROM metrics.targets, LATERAL (VALUES ('closures', closures),
                                              ('examination_closures', examination_closures))
             AS t (figure, n)
        WHERE period = $1""", period.label)
    for part, measure, key, hours, n, value, at in rows:
        if part == "median":
            result.middles.take(measure, key, hours, n, value)
        elif part == "as_of":
            result.as_of = at
        elif part == "target":
            result.targets = result.targets or {}
            result.targets[measure] = n
        elif part == "places":
            result.totals.places = n
        else:
            result.totals.take(part, measure, key, n)
    result.totals.close()
    return result
