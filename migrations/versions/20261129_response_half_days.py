"""Response times counted by half day of delay in the duration histograms.

The ``response_hours`` rows of ``metrics.duration_histograms`` had one bucket per whole hour:
over many agencies and years a period's histogram summed tens of thousands of rows. Their
bucket is now ``floor(answered_after_hours / 12)`` (``metrics_worker.histograms``); the exact
median still reads the hours of one bucket from ``ix_metrics_transitions_response_hours``.
Recounted from the responses already there.
"""

from alembic import op

revision = "20261129_response_half_days"
down_revision = "20261129_response_asked_at"


def _recount(bucket: str) -> None:
    op.execute("DELETE FROM metrics.duration_histograms WHERE measure = 'response_hours'")
    op.execute(f"""
        INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n)
        SELECT g.grain, date_trunc(g.unit, (at AT TIME ZONE metrics.office_timezone())::date)::date,
               'response_hours', agency, {bucket}, count(*)
        FROM metrics.transitions
        CROSS JOIN (VALUES ('d', 'day'), ('m', 'month'), ('y', 'year')) AS g (grain, unit)
        WHERE answered_after_hours IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5""")


def upgrade() -> None:
    _recount("floor(answered_after_hours / 12.0)::integer")


def downgrade() -> None:
    _recount("answered_after_hours")
