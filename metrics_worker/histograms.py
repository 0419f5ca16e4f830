"""Exact medians from histograms: sum a few bucket rows, then read only the middle bucket.

The projection counts each duration in a whole-unit bucket (days to close by closure stage,
hours to respond by agency) per local day, month and year (``metrics.duration_histograms``).
A period's histogram is the sum of a bounded number of rows (``metrics_worker.calendar``); it
says which bucket holds the middle value(s) and at which rank, and only that bucket's rows of
the period are read, through an index, to get the exact value. The result is what
``percentile_cont(0.5)`` over all the period's values gives.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.calendar import spans

logger = logging.getLogger(__name__)

DAYS_TO_CLOSE = "days_to_close"    # key: closure stage; value: (closed - received) in days
RESPONSE_HOURS = "response_hours"  # key: agency; value: (respond - request) in hours

# The exact values of one bucket of the period, for each (key, bucket) asked in ``w``.
VALUES = {
    DAYS_TO_CLOSE: """
        SELECT extract(epoch FROM c.closed_at - c.received_at) / 86400.0 AS value
        FROM metrics.cases c
        WHERE c.closure_stage = w.key AND c.closed_after_days = w.bucket
          AND c.closed_at >= :s AND c.closed_at < :e""",
    RESPONSE_HOURS: """
        SELECT extract(epoch FROM r.at - q.at) / 3600.0 AS value
        FROM metrics.transitions r
        JOIN metrics.transitions q ON q.case_id = r.case_id AND q.version = r.version - 1
        WHERE r.agency = w.key AND r.answered_after_hours = w.bucket
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


def parts_sql(first: date, last: date, params: dict[str, object]) -> str:
    """Rows ``(measure, key, bucket, n)``: per measure and key, how many values of the period
    fell in each bucket (summed over the period's years, months and loose days)."""
    parts = []
    for i, span in enumerate(spans(first, last)):
        params.update({f"h_first{i}": span.first, f"h_last{i}": span.last})
        parts.append(f"SELECT measure, key, bucket, n FROM metrics.duration_histograms "
                     f"WHERE grain = '{span.grain}' AND start BETWEEN :h_first{i} AND :h_last{i}")
    if not parts:
        return "SELECT NULL::text, NULL::text, NULL::integer, NULL::bigint WHERE false"
    return (f"SELECT measure, key, bucket, sum(n) AS n FROM ({' UNION ALL '.join(parts)}) h "
            f"GROUP BY 1, 2, 3 HAVING sum(n) > 0")


Histograms = dict[str, dict[str, dict[int, int]]]  # measure -> key -> bucket -> count


def _locate(buckets: dict[int, int], rank: int) -> tuple[int, int]:
    """The bucket holding the value of 0-based ``rank``, and its rank inside the bucket."""
    for bucket in sorted(buckets):
        if rank < buckets[bucket]:
            return bucket, rank
        rank -= buckets[bucket]
    raise ValueError("rank beyond the histogram")


async def medians(session: AsyncSession, histograms: Histograms, start: datetime,
                  end: datetime) -> dict[str, dict[str, tuple[int, float]]]:
    """Per measure and key: how many values the period has, and their median
    (``percentile_cont(0.5)``), reading only the one or two buckets the middle falls in, for
    every measure in one statement."""
    wanted: list[tuple[str, str, int, int, int]] = []  # measure, key, bucket, skip, take
    ranks: dict[tuple[str, str], tuple[int, int]] = {}
    for measure, per_key in histograms.items():
        for key, buckets in per_key.items():
            total = sum(buckets.values())
            lower, upper = (total - 1) // 2, total // 2
            ranks[measure, key] = (lower, upper)
            (low_bucket, low_rank), (high_bucket, high_rank) = \
                _locate(buckets, lower), _locate(buckets, upper)
            if low_bucket == high_bucket:
                wanted.append((measure, key, low_bucket, low_rank, high_rank - low_rank + 1))
            else:
                wanted += [(measure, key, low_bucket, low_rank, 1),
                           (measure, key, high_bucket, high_rank, 1)]
    if not wanted:
        return {}
    params: dict[str, object] = {"s": start, "e": end}
    rows: dict[str, list[str]] = defaultdict(list)
    for i, (measure, key, bucket, skip, take) in enumerate(wanted):
        params.update({f"k{i}": key, f"b{i}": bucket, f"o{i}": skip, f"t{i}": take})
        rows[measure].append(f"(CAST(:k{i} AS varchar), CAST(:b{i} AS integer), "
                             f"CAST(:o{i} AS integer), CAST(:t{i} AS integer), {i})")
    found = await session.execute(text(" UNION ALL ".join(f"""
        (SELECT '{measure}' AS measure, w.key, w.request, v.value
         FROM (VALUES {', '.join(values)}) AS w (key, bucket, skip, take, request)
         CROSS JOIN LATERAL ({VALUES[measure]} ORDER BY 1 OFFSET w.skip LIMIT w.take) AS v)"""
        for measure, values in rows.items()) + " ORDER BY request, value"), params)
    middles: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in found:
        middles[row.measure, row.key].append(float(row.value))
    result: dict[str, dict[str, tuple[int, float]]] = defaultdict(dict)
    for (measure, key), (lower, upper) in ranks.items():
        middle = middles[measure, key]
        if len(middle) != (2 if upper > lower else 1):
            logger.warning("%s histogram of %r disagrees with its rows; computed directly",
                           measure, key)
            direct = (await session.execute(text(DIRECT[measure]),
                                            {"key": key, "s": start, "e": end})).one()
            if direct.n:
                result[measure][key] = (int(direct.n), float(direct.median))
            continue
        position = 0.5 * (lower + upper)  # percentile_cont: interpolate between the two
        low, high = middle[0], middle[-1]
        result[measure][key] = (sum(histograms[measure][key].values()),
                                low + (position - math.floor(position)) * (high - low))
    return result
