"""Exact medians from histograms: sum a few bucket rows, then read only the middle bucket.

The projection counts each duration in a bucket (days to close by closure stage, in whole days;
hours to respond by agency, in half days) per local day, month and year
(``metrics.duration_histograms``). A period's histogram is the sum of a bounded number of rows
(``metrics_worker.calendar``); window sums over it say which bucket holds the middle value(s)
and at which rank, and only that bucket's rows of the period are read, from an index that
holds the values, to get them exactly. All in one statement (``medians_sql``); the result is
what ``percentile_cont(0.5)`` over all the period's values gives.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.calendar import spans

logger = logging.getLogger(__name__)

DAYS_TO_CLOSE = "days_to_close"    # key: closure stage; value: (closed - received) in days
RESPONSE_HOURS = "response_hours"  # key: agency; value: (respond - request) in hours
# Responses are counted by half day of delay (``answered_after_hours`` in twelves): a period's
# histogram over many agencies and years stays a few thousand rows, and the exact values of one
# bucket are read from an index that holds them.
RESPONSE_BUCKET_HOURS = 12
# A response's bucket from its whole hours (floor, also below zero, as Python's ``//``).
RESPONSE_BUCKET = f"floor(answered_after_hours / {RESPONSE_BUCKET_HOURS}.0)::integer"

# The exact values of one bucket of the period, for each (key, bucket) asked in ``w``.
VALUES = {
    DAYS_TO_CLOSE: """
        SELECT extract(epoch FROM c.closed_at - c.received_at) / 86400.0 AS value
        FROM metrics.cases c
        WHERE c.closure_stage = w.key AND c.closed_after_days = w.bucket
          AND c.closed_at >= :s AND c.closed_at < :e""",
    RESPONSE_HOURS: f"""
        SELECT extract(epoch FROM r.at - r.asked_at) / 3600.0 AS value
        FROM metrics.transitions r
        WHERE r.agency = w.key
          AND r.answered_after_hours BETWEEN w.bucket * {RESPONSE_BUCKET_HOURS}
                                         AND (w.bucket + 1) * {RESPONSE_BUCKET_HOURS} - 1
          AND r.at >= :s AND r.at < :e""",
}

# The same figure the slow way, for a key whose histogram disagrees with the rows it sums up
# (a read model damaged by hand, or being rebuilt): a wrong figure would be worse than a slow one.
DIRECT = {
    DAYS_TO_CLOSE: """
        SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM closed_at - received_at) / 86400.0) AS median
        FROM metrics.cases
        WHERE closure_stage = :key AND closed_at >= :s AND closed_at < :e""",
    RESPONSE_HOURS: """
        SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM r.at - q.at) / 3600.0) AS median
        FROM metrics.transitions r
        JOIN metrics.transitions q ON q.case_id = r.case_id AND q.version = r.version - 1
                                  AND q.action = 'request_clarification'
        WHERE r.action = 'respond' AND r.agency = :key AND r.at >= :s AND r.at < :e""",
}

Sample = tuple[datetime, str, str, int]  # moment, measure, key, bucket


async def add(session: AsyncSession, samples: Sequence[Sample]) -> None:
    """Counts each sample in its bucket on the moment's local day, month and year."""
    if not samples:
        return
    rows = ", ".join(
        f"((CAST(:at{i} AS timestamptz) AT TIME ZONE metrics.office_timezone())::date,"
        f" CAST(:measure{i} AS varchar), CAST(:key{i} AS varchar), CAST(:bucket{i} AS integer))"
        for i in range(len(samples)))
    params: dict[str, object] = {}
    for i, (at, measure, key, bucket) in enumerate(samples):
        params.update({f"at{i}": at, f"measure{i}": measure, f"key{i}": key,
                       f"bucket{i}": bucket})
    await session.execute(text(f"""
        WITH samples (day, measure, key, bucket) AS (VALUES {rows})
        INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n)
        SELECT g.grain, date_trunc(g.unit, s.day)::date, s.measure, s.key, s.bucket, count(*)
        FROM samples s CROSS JOIN (VALUES ('d', 'day'), ('m', 'month'), ('y', 'year'))
             AS g (grain, unit)
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (grain, start, measure, key, bucket)
        DO UPDATE SET n = duration_histograms.n + EXCLUDED.n"""), params)


def medians_sql(first: date, last: date, params: dict[str, object]) -> str:
    """Rows ``(measure, key, bucket, total, value)``: per measure and key, how many values the
    period has (``total``) and the exact value(s) at the middle rank(s), read from the one or
    two buckets the summed histogram puts them in (``value`` null when the bucket's rows are
    missing). ``:s`` and ``:e`` bound the period in UTC."""
    parts = []
    for i, span in enumerate(spans(first, last)):
        params.update({f"h_first{i}": span.first, f"h_last{i}": span.last})
        parts.append(f"SELECT measure, key, bucket, n FROM metrics.duration_histograms "
                     f"WHERE grain = '{span.grain}' AND start BETWEEN :h_first{i} AND :h_last{i}")
    if not parts:
        return ("SELECT NULL::text, NULL::text, NULL::integer, NULL::bigint, "
                "NULL::double precision WHERE false")
    values = " UNION ALL ".join(
        f"(SELECT value FROM ({sql}) v WHERE w.measure = '{measure}'"
        f" ORDER BY value OFFSET w.skip LIMIT w.take)" for measure, sql in VALUES.items())
    return f"""
        WITH summed AS (
          SELECT measure, key, bucket, sum(n)::bigint AS n FROM ({' UNION ALL '.join(parts)}) h
          GROUP BY 1, 2, 3 HAVING sum(n) > 0),
        ranked AS (
          SELECT measure, key, bucket, n,
                 sum(n) OVER (PARTITION BY measure, key ORDER BY bucket)::bigint - n AS below,
                 sum(n) OVER (PARTITION BY measure, key)::bigint AS total
          FROM summed),
        w AS (  -- the bucket(s) holding ranks (total - 1) / 2 and total / 2, counted from 0
          SELECT measure, key, bucket, total,
                 greatest((total - 1) / 2 - below, 0) AS skip,
                 least(total / 2, below + n - 1) - greatest((total - 1) / 2, below) + 1 AS take
          FROM ranked WHERE below <= total / 2 AND below + n > (total - 1) / 2)
        SELECT w.measure, w.key, w.bucket, w.total, v.value
        FROM w LEFT JOIN LATERAL ({values}) v ON true"""


Medians = dict[str, dict[str, tuple[int, float]]]  # measure -> key -> (count, median)


class MiddleValues:
    """Collects the rows of ``medians_sql`` and turns them into medians."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = {}
        self.values: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)

    def take(self, measure: str, key: str, bucket: int, total: int,
             value: float | None) -> None:
        self.totals[measure, key] = total
        if value is not None:
            self.values[measure, key].append((bucket, value))

    async def medians(self, session: AsyncSession, start: datetime, end: datetime) -> Medians:
        """``percentile_cont(0.5)`` per measure and key; computed the slow way for a key whose
        histogram disagrees with the rows it sums up (a read model damaged by hand, or being
        rebuilt): a wrong figure would be worse than a slow one."""
        result: Medians = defaultdict(dict)
        for (measure, key), total in self.totals.items():
            middle = [value for _, value in sorted(self.values[measure, key])]
            if len(middle) != 2 - total % 2:
                logger.warning("%s histogram of %r disagrees with its rows; computed directly",
                               measure, key)
                direct = (await session.execute(text(DIRECT[measure]),
                                                {"key": key, "s": start, "e": end})).one()
                if direct.n:
                    result[measure][key] = (int(direct.n), float(direct.median))
                continue
            # percentile_cont: the middle value, or halfway between the two middle ones.
            result[measure][key] = (total, (middle[0] + middle[-1]) / 2)
        return result
