"""Duration histograms by day of delay, split by hour: a median reads one hour's values.

A median read every value of its histogram bucket in the period (a whole day of delay to close,
half a day to respond): over eight years, tens of thousands of index entries. Both histograms of
``metrics.duration_histograms`` now have buckets of one day of delay, and each bucket row counts
its values by hour of the bucket in ``sub_counts`` (24 of them), so a median reads only the
values of one hour of delay (``metrics_worker.histograms``), from
``ix_metrics_cases_hours_to_close`` (new: cases by whole hours to close) or
``ix_metrics_transitions_response_hours`` (responses by whole hours already). Recounted from the
cases and responses already there.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261129_hour_histograms"
down_revision = "20261129_response_half_days"

HOURS_TO_CLOSE = "(floor(extract(epoch FROM closed_at - received_at) / 3600)::integer)"
GRAINS = "(VALUES ('d', 'day'), ('m', 'month'), ('y', 'year')) AS g (grain, unit)"
LOCAL_DAY = "(s.at AT TIME ZONE metrics.office_timezone())::date"
# Each closure with a stage and each timed response, in whole hours (as the projection counts
# them; its 24-hour buckets are ``floor(hours / 24)``).
SAMPLES = """
  SELECT t.at, 'days_to_close' AS measure, t.closure_stage AS key,
         floor(extract(epoch FROM t.at - c.received_at) / 3600)::integer AS hours
  FROM metrics.transitions t JOIN metrics.cases c USING (case_id)
  WHERE t.to_status = 'closed' AND t.closure_stage <> ''
  UNION ALL
  SELECT at, 'response_hours', agency, answered_after_hours
  FROM metrics.transitions WHERE answered_after_hours IS NOT NULL"""


def upgrade() -> None:
    op.add_column("duration_histograms",
                  sa.Column("sub_counts", postgresql.ARRAY(sa.Integer()), nullable=True),
                  schema="metrics")
    op.execute("DELETE FROM metrics.duration_histograms")
    by_hour = ", ".join(f"coalesce(sum(n) FILTER (WHERE hour = {i}), 0)" for i in range(24))
    op.execute(f"""
        WITH days AS (
          SELECT {LOCAL_DAY} AS day, s.measure, s.key,
                 floor(s.hours / 24.0)::integer AS bucket,
                 s.hours - 24 * floor(s.hours / 24.0)::integer AS hour, count(*) AS n
          FROM ({SAMPLES}) s GROUP BY 1, 2, 3, 4, 5),
        hours AS (
          SELECT g.grain, date_trunc(g.unit, d.day)::date AS start, d.measure, d.key, d.bucket,
                 d.hour, sum(d.n) AS n
          FROM days d CROSS JOIN {GRAINS}
          GROUP BY 1, 2, 3, 4, 5, 6)
        INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n, sub_counts)
        SELECT grain, start, measure, key, bucket, sum(n), ARRAY[{by_hour}]::integer[]
        FROM hours GROUP BY 1, 2, 3, 4, 5""")
    op.alter_column("duration_histograms", "sub_counts", nullable=False, schema="metrics")
    op.drop_index("ix_metrics_cases_days_to_close", "cases", schema="metrics")
    op.create_index("ix_metrics_cases_hours_to_close", "cases",
                    ["closure_stage", sa.text(HOURS_TO_CLOSE), "closed_at"], schema="metrics",
                    postgresql_include=["received_at"],
                    postgresql_where=sa.text("closed_after_days IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_metrics_cases_hours_to_close", "cases", schema="metrics")
    op.create_index("ix_metrics_cases_days_to_close", "cases",
                    ["closure_stage", "closed_after_days", "closed_at"], schema="metrics",
                    postgresql_include=["received_at"],
                    postgresql_where=sa.text("closed_after_days IS NOT NULL"))
    op.drop_column("duration_histograms", "sub_counts", schema="metrics")
    # Back to whole days to close and half days to respond.
    op.execute("DELETE FROM metrics.duration_histograms")
    op.execute(f"""
        INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n)
        SELECT g.grain, date_trunc(g.unit, {LOCAL_DAY})::date, s.measure, s.key,
               CASE s.measure WHEN 'days_to_close' THEN floor(s.hours / 24.0)::integer
                              ELSE floor(s.hours / 12.0)::integer END, count(*)
        FROM ({SAMPLES}) s CROSS JOIN {GRAINS}
        GROUP BY 1, 2, 3, 4, 5""")
