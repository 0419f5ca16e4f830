"""Exact medians from histograms: sum a few bucket rows, then read only the middle hour.

The projection counts each duration, in whole hours (days to close by closure stage, hours to
respond by agency), in a bucket of one day of delay, per local day, month and year
(``metrics.duration_histograms``), and each bucket row also counts its values by hour of the
bucket (``sub_counts``, 24 of them). A period's histogram is the sum of a bounded number of
rows (``metrics_worker.calendar``); window sums over it say which bucket holds the middle
value(s) and at which rank, the summed ``sub_counts`` of that bucket say which hour, and only
that hour's rows of the period are read, from an index that holds the values, to get them
exactly. All in one statement (``medians_sql``); the result is what ``percentile_cont(0.5)``
over all the period's values gives.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.calendar import day_sql, spans

logger = logging.getLogger(__name__)

DAYS_TO_CLOSE = "days_to_close"    # key: closure stage; value: (closed - received) in days
RESPONSE_HOURS = "response_hours"  # key: agency; value: (respond - request) in hours
# A bucket is one day of delay, split into hours in ``sub_counts``: a period's histogram over
# many agencies and years stays a few thousand rows, and the values read for a median are
# those of one hour of delay, not of a whole day of it.
HOURS_PER_BUCKET = 24
# Whole hours of a closed case, as the index the values of one hour are read from holds them.
HOURS_TO_CLOSE = "(floor(extract(epoch FROM closed_at - received_at) / 3600)::integer)"


def bucket_sql(hours: str) -> str:
    """The bucket (day of delay) of a duration of ``hours`` whole hours (floor, also below
    zero, as Python's ``//``)."""
    return f"floor({hours} / {HOURS_PER_BUCKET}.0)::integer"


def hour_sql(hours: str) -> str:
    """The hour of its bucket (0 to 23) of a duration of ``hours`` whole hours."""
    return f"({hours} - {HOURS_PER_BUCKET} * {bucket_sql(hours)})"


def sub_counts_sql(weight: str, hour: str = "hour") -> str:
    """The ``sub_counts`` of a group of rows: per hour of the bucket, the sum of ``weight``."""
    return "ARRAY[{}]::integer[]".format(", ".join(
        f"coalesce(sum({weight}) FILTER (WHERE {hour} = {i}), 0)"
        for i in range(HOURS_PER_BUCKET)))


def added_sub_counts_sql(table: str, other: str) -> str:
    """``sub_counts`` of ``table`` plus those of ``other``, hour by hour."""
    return "ARRAY[{}]::integer[]".format(", ".join(
        f"{table}.sub_counts[{i}] + {other}.sub_counts[{i}]"
        for i in range(1, HOURS_PER_BUCKET + 1)))


# The exact durations of one hour of delay of the period (``{start}``, ``{end}``), for each
# (key, hours) asked in ``x``, and the unit a median is given in: sorted as intervals, only
# the one or two middle ones are turned into numbers.
VALUES = {
    DAYS_TO_CLOSE: (f"""
        SELECT closed_at - received_at AS duration
        FROM metrics.cases
        WHERE closure_stage = x.key AND {HOURS_TO_CLOSE} = x.hours
          AND closed_after_days IS NOT NULL AND closed_at >= {{start}} AND closed_at < {{end}}""",
                    86400),
    RESPONSE_HOURS: ("""
        SELECT r.at - r.asked_at AS duration
        FROM metrics.transitions r
        WHERE r.agency = x.key AND r.answered_after_hours = x.hours
          AND r.at >= {start} AND r.at < {end}""", 3600),
}

# The same figure the slow way, for a key whose histogram disagrees with the rows it sums up
# (a read model damaged by hand, or being rebuilt): a wrong figure would be worse than a slow one.
DIRECT = {
    DAYS_TO_CLOSE: """
        SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM closed_at - received_at) / 86400.0) AS median
        FROM metrics.cases
        WHERE closure_stage = $1 AND closed_at >= $2 AND closed_at < $3""",
    RESPONSE_HOURS: """
        SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM r.at - q.at) / 3600.0) AS median
        FROM metrics.transitions r
        JOIN metrics.transitions q ON q.case_id = r.case_id AND q.version = r.version - 1
                                  AND q.action = 'request_clarification'
        WHERE r.action = 'respond' AND r.agency = $1 AND r.at >= $2 AND r.at < $3""",
}

Sample = tuple[datetime, str, str, int]  # moment, measure, key, whole hours of the duration


# One statement whatever the number of samples (four arrays as its parameters), prepared once.
_ADD = text(f"""
    WITH samples (day, measure, key, hours) AS (
      SELECT (at AT TIME ZONE metrics.office_timezone())::date, measure, key, hours
      FROM unnest(CAST(:ats AS timestamptz[]), CAST(:measures AS varchar[]),
                  CAST(:keys AS varchar[]), CAST(:hours AS integer[]))
           AS s (at, measure, key, hours))
    INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n, sub_counts)
    SELECT g.grain, date_trunc(g.unit, s.day)::date, s.measure, s.key, s.bucket, count(*),
           {sub_counts_sql("1")}
    FROM (SELECT day, measure, key, {bucket_sql("hours")} AS bucket,
                 {hour_sql("hours")} AS hour FROM samples) s
    CROSS JOIN (VALUES ('d', 'day'), ('m', 'month'), ('y', 'year')) AS g (grain, unit)
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (grain, start, measure, key, bucket)
    DO UPDATE SET n = duration_histograms.n + EXCLUDED.n,
                  sub_counts = {added_sub_counts_sql("duration_histograms", "EXCLUDED")}
    """)


async def add(session: AsyncSession, samples: Sequence[Sample]) -> None:
    """Counts each sample in its bucket and hour on the moment's local day, month and year."""
    if not samples:
        return
    ats, measures, keys, hours = zip(*samples, strict=True)
    await session.execute(_ADD, {"ats": list(ats), "measures": list(measures),
                                 "keys": list(keys), "hours": list(hours)})


def medians_sql(first: date, last: date, start: datetime, end: datetime) -> str:
    """Rows ``(measure, key, hours, total, value)``: per measure and key, how many values the
    period has (``total``) and the exact value(s) at the middle rank(s), read from the one or
    two hours of delay the summed histogram puts them in (``value`` and ``hours`` null when
    those rows are missing). ``start`` and ``end`` bound the period in UTC; like the days,
    they are written into the statement (``calendar.day_sql``)."""
    parts = []
    for span in spans(first, last):
        parts.append(f"SELECT measure, key, bucket, n, sub_counts "
                     f"FROM metrics.duration_histograms WHERE grain = '{span.grain}' "
                     f"AND start BETWEEN {day_sql(span.first)} AND {day_sql(span.last)}")
    if not parts:
        return ("SELECT NULL::text, NULL::text, NULL::integer, NULL::bigint, "
                "NULL::double precision WHERE false")
    by_hour = ", ".join(f"sum(h.sub_counts[{i}])" for i in range(1, HOURS_PER_BUCKET + 1))
    bounds = {"start": f"TIMESTAMPTZ '{start.isoformat()}'",
              "end": f"TIMESTAMPTZ '{end.isoformat()}'"}
    values = " UNION ALL ".join(
        f"(SELECT extract(epoch FROM duration) / {unit}.0 AS value FROM ("
        f"SELECT duration FROM ({sql.format(**bounds)}) v WHERE x.measure = '{measure}'"
        f" ORDER BY duration OFFSET x.skip LIMIT x.take) d)"
        for measure, (sql, unit) in VALUES.items())
    return f"""
        WITH h AS MATERIALIZED ({' UNION ALL '.join(parts)}),
        summed AS (
          SELECT measure, key, bucket, sum(n)::bigint AS n FROM h
          GROUP BY 1, 2, 3 HAVING sum(n) > 0),
        ranked AS (
          SELECT measure, key, bucket, n,
                 sum(n) OVER (PARTITION BY measure, key ORDER BY bucket)::bigint - n AS below,
                 sum(n) OVER (PARTITION BY measure, key)::bigint AS total
          FROM summed),
        w AS MATERIALIZED (
          -- the bucket(s) holding ranks (total - 1) / 2 and total / 2, counted from 0; skip
          -- and take count within the bucket
          SELECT measure, key, bucket, total,
                 greatest((total - 1) / 2 - below, 0) AS skip,
                 least(total / 2, below + n - 1) - greatest((total - 1) / 2, below) + 1 AS take
          FROM ranked WHERE below <= total / 2 AND below + n > (total - 1) / 2),
        by_hour AS (  -- those buckets' values by hour
          SELECT measure, key, bucket, w.total, w.skip, w.take, ARRAY[{by_hour}] AS n
          FROM w JOIN h USING (measure, key, bucket) GROUP BY 1, 2, 3, 4, 5, 6),
        x AS (
          -- the hour(s) holding the ranks; skip and take count within the hour (no hour when
          -- the bucket's hours disagree with its count)
          SELECT b.measure, b.key, b.total, b.bucket * {HOURS_PER_BUCKET} + o.hour AS hours,
                 greatest(b.skip - o.below, 0) AS skip,
                 least(b.skip + b.take - 1, o.below + o.n - 1)
                   - greatest(b.skip, o.below) + 1 AS take
          FROM by_hour b LEFT JOIN LATERAL (
            SELECT u.hour - 1 AS hour, u.n, sum(u.n) OVER (ORDER BY u.hour) - u.n AS below
            FROM unnest(b.n) WITH ORDINALITY AS u (n, hour)) o
            ON o.n > 0 AND o.below <= b.skip + b.take - 1 AND o.below + o.n > b.skip)
        SELECT x.measure, x.key, x.hours, x.total, v.value
        FROM x
        LEFT JOIN LATERAL ({values}) v ON true"""


Medians = dict[str, dict[str, tuple[int, float]]]  # measure -> key -> (count, median)


class MiddleValues:
    """Collects the rows of ``medians_sql`` and turns them into medians."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = {}
        self.values: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)

    def take(self, measure: str, key: str, hours: int | None, total: int,
             value: float | None) -> None:
        self.totals[measure, key] = total
        if hours is not None and value is not None:
            self.values[measure, key].append((hours, value))

    async def medians(self, connection: asyncpg.Connection, start: datetime,
                      end: datetime) -> Medians:
        """``percentile_cont(0.5)`` per measure and key; computed the slow way for a key whose
        histogram disagrees with the rows it sums up (a read model damaged by hand, or being
        rebuilt): a wrong figure would be worse than a slow one."""
        result: Medians = defaultdict(dict)
        for (measure, key), total in self.totals.items():
            middle = [value for _, value in sorted(self.values[measure, key])]
            if len(middle) != 2 - total % 2:
                logger.warning("%s histogram of %r disagrees with its rows; computed directly",
                               measure, key)
                direct = await connection.fetchrow(DIRECT[measure], key, start, end)
                if direct is not None and direct["n"]:
                    result[measure][key] = (int(direct["n"]), float(direct["median"]))
                continue
            # percentile_cont: the middle value, or halfway between the two middle ones.
            result[measure][key] = (total, (middle[0] + middle[-1]) / 2)
        return result
