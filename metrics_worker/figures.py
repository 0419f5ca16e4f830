"""Everything a summary reads from the pre-aggregated read model, in one statement.

Counts (``metrics_worker.counts``), duration histograms (``metrics_worker.histograms``), the
newest event's time and the period's targets come back as rows of one round trip; only the
exact medians need a second one (they depend on where the histograms put the middle).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import counts, histograms
from metrics_worker.periods import Period


@dataclass
class Figures:
    totals: counts.Totals = field(default_factory=counts.Totals)
    histograms: histograms.Histograms = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict)))
    as_of: datetime | None = None
    targets: dict[str, int | None] | None = None  # None: no target set for the period


async def read(session: AsyncSession, period: Period) -> Figures:
    params: dict[str, object] = {"label": period.label}
    result = Figures()
    rows = await session.execute(text(f"""
        SELECT part, measure, key, NULL::integer AS bucket, n, NULL::timestamptz AS at
        FROM ({counts.parts_sql(period.first, period.last, params)}) c
        UNION ALL
        SELECT 'histogram', measure, key, bucket, n, NULL
        FROM ({histograms.parts_sql(period.first, period.last, params)}) h
        UNION ALL
        SELECT 'as_of', NULL, NULL, NULL, NULL,
               greatest((SELECT max(received_at) FROM metrics.contacts),
                        (SELECT max(at) FROM metrics.transitions))
        UNION ALL
        SELECT 'target', t.figure, NULL, NULL, t.n, NULL
        FROM metrics.targets, LATERAL (VALUES ('closures', closures),
                                              ('examination_closures', examination_closures))
             AS t (figure, n)
        WHERE period = :label"""), params)
    for row in rows:
        if row.part == "histogram":
            result.histograms[row.measure][row.key][int(row.bucket)] = int(row.n)
        elif row.part == "as_of":
            result.as_of = row.at
        elif row.part == "target":
            result.targets = result.targets or {}
            result.targets[row.measure] = None if row.n is None else int(row.n)
        elif row.part == "places":
            result.totals.places = int(row.n)
        else:
            result.totals.take(row.part, row.measure, row.key, int(row.n))
    result.totals.close()
    return result
