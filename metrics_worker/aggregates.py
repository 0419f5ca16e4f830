"""The pre-aggregated tables derived in SQL from the fact tables.

The live projection (``metrics_worker.consumer``) adds to ``metrics.daily_counts``,
``metrics.period_counts`` and ``metrics.duration_histograms`` event by event; this module states
each measure once as a query over ``metrics.contacts``, ``metrics.cases`` and
``metrics.transitions``: how the benchmarks' data gets its aggregates, and the definition a
rebuild's counts (``metrics_worker.tally``, counted while the log is folded) are checked against
in ``tests/metrics_worker/test_replay.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import counts, histograms
from shared.vocabulary import CASE_OPENING_KINDS, EXAMINATION_STATUSES


def _listed(values: Iterable[object]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(str(v) for v in values))


_REPORTS = _listed(CASE_OPENING_KINDS)
_EXAMINATION = _listed(EXAMINATION_STATUSES)
_YEAR = "extract(year FROM c.received_at AT TIME ZONE z.tz)::int::text"
# The steps that close a case or first take it into examination, with the year the case was
# received and whether it had been in examination before (``closed_examined``).
_MILESTONES = f"""milestones AS (
  SELECT t.at, t.to_status, t.closure_stage, t.reason, {_YEAR} AS year,
         t.version = x.version AS first_examination, x.version < t.version AS examined_before
  FROM metrics.transitions t JOIN metrics.cases c USING (case_id)
  LEFT JOIN (SELECT case_id, min(version) AS version FROM metrics.transitions
             WHERE to_status IN ({_EXAMINATION}) GROUP BY case_id) x USING (case_id), zone z
  WHERE t.to_status = 'closed' OR t.version = x.version)"""

# Every increment of ``counts``: (moment, measure, key), one row per unit counted (with the
# common table expressions ``zone`` and ``milestones``).
INCREMENTS = f"""
  SELECT received_at AS at, '{counts.CONTACTS}' AS measure, kind AS key FROM metrics.contacts
  UNION ALL
  SELECT received_at, m.measure, CASE m.measure WHEN '{counts.RECEIVED_CHANNEL}' THEN channel
                                 WHEN '{counts.RECEIVED_SUBSTANCE}' THEN substance
                                 ELSE agency END
  FROM metrics.contacts CROSS JOIN (VALUES ('{counts.RECEIVED_CHANNEL}'),
       ('{counts.RECEIVED_SUBSTANCE}'), ('{counts.RECEIVED_AGENCY}')) AS m (measure)
  WHERE kind IN ({_REPORTS})
  UNION ALL
  SELECT c.received_at, '{counts.OPENED}', {_YEAR} FROM metrics.cases c, zone z
  UNION ALL
  SELECT received_at, '{counts.STATUS_IN}', opened_status FROM metrics.cases
  UNION ALL
  SELECT at, '{counts.STATUS_OUT}', from_status FROM metrics.transitions
  UNION ALL
  SELECT at, '{counts.STATUS_IN}', to_status FROM metrics.transitions WHERE to_status <> 'closed'
  UNION ALL
  SELECT at, '{counts.REGISTERED}', '' FROM metrics.transitions WHERE action = 'register'
  UNION ALL
  SELECT at, '{counts.EXAMINED}', year FROM milestones WHERE first_examination
  UNION ALL
  SELECT at, m.measure, CASE m.measure WHEN '{counts.CLOSED_STAGE}' THEN coalesce(closure_stage, '')
                                       WHEN '{counts.CLOSED_REASON}' THEN coalesce(reason, '')
                                       ELSE year END
  FROM milestones CROSS JOIN (VALUES ('{counts.CLOSED}'), ('{counts.CLOSED_STAGE}'),
                                     ('{counts.CLOSED_REASON}')) AS m (measure)
  WHERE to_status = 'closed'
  UNION ALL
  SELECT at, '{counts.CLOSED_EXAMINED}', year FROM milestones
  WHERE to_status = 'closed' AND examined_before
  UNION ALL {counts.PLACE_AND_LIAISON_INCREMENTS}
  UNION ALL {counts.MONTHLY_INCREMENTS}"""

# Every sample of ``histograms``: (moment, measure, key, whole hours of the duration).
SAMPLES = f"""
  SELECT t.at, '{histograms.DAYS_TO_CLOSE}' AS measure, t.closure_stage AS key,
         floor(extract(epoch FROM t.at - c.received_at) / 3600)::integer AS hours
  FROM metrics.transitions t JOIN metrics.cases c USING (case_id)
  WHERE t.to_status = 'closed' AND t.closure_stage <> ''
  UNION ALL
  SELECT at, '{histograms.RESPONSE_HOURS}', agency, answered_after_hours
  FROM metrics.transitions WHERE answered_after_hours IS NOT NULL"""

_ZONE = "zone (tz) AS (SELECT metrics.office_timezone())"

# The duration histograms from the samples (also how the benchmarks' data gets them). Summed by
# hour for every grain first, so each row's ``sub_counts`` are built from a few hour rows.
DURATION_HISTOGRAMS = f"""WITH {_ZONE}, days AS (
      SELECT (s.at AT TIME ZONE z.tz)::date AS day, s.measure, s.key,
             {histograms.bucket_sql("s.hours")} AS bucket, {histograms.hour_sql("s.hours")} AS hour,
             count(*) AS n
      FROM ({SAMPLES}) s, zone z GROUP BY 1, 2, 3, 4, 5),
    hours AS (
      SELECT g.grain, date_trunc(g.unit, d.day)::date AS start, d.measure, d.key, d.bucket,
             d.hour, sum(d.n) AS n
      FROM days d
      CROSS JOIN (VALUES ('d', 'day'), ('m', 'month'), ('y', 'year')) AS g (grain, unit)
      GROUP BY 1, 2, 3, 4, 5, 6)
    INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n, sub_counts)
    SELECT grain, start, measure, key, bucket, sum(n), {histograms.sub_counts_sql("n")}
    FROM hours GROUP BY 1, 2, 3, 4, 5"""

STATEMENTS = (
    f"""WITH {_ZONE}, {_MILESTONES}
    INSERT INTO metrics.daily_counts (day, measure, key, n)
    SELECT (i.at AT TIME ZONE z.tz)::date, i.measure, i.key, count(*)
    FROM ({INCREMENTS}) i, zone z GROUP BY 1, 2, 3""",
    """INSERT INTO metrics.period_counts (grain, start, measure, key, n)
    SELECT g.grain, date_trunc(g.unit, d.day)::date, d.measure, d.key, sum(d.n)
    FROM metrics.daily_counts d
    CROSS JOIN (VALUES ('m', 'month'), ('y', 'year')) AS g (grain, unit)
    GROUP BY 1, 2, 3, 4""",
    DURATION_HISTOGRAMS,
)

# The tables filled here; every other derived table is written by the rebuild itself.
TABLES = ("daily_counts", "period_counts", "duration_histograms")


async def derive(session: AsyncSession) -> None:
    """Fills the aggregate tables (empty) from the fact tables."""
    for statement in STATEMENTS:
        await session.execute(text(statement))
