"""Summaries in bounded time: counts by month and year, duration histograms, a place index.

- ``metrics.period_counts``: the daily counts summed by month and by year.
- ``metrics.duration_histograms``: days to close (by closure stage) and hours to respond (by
  agency) in whole-unit buckets, per day, month and year; with ``cases.closed_after_days`` and
  ``transitions.answered_after_hours`` (each row's bucket, indexed) for the exact medians.
- an index walking on-the-spot places one by one, for distinct places.
Filled from the read model already there.
"""

import sqlalchemy as sa
from alembic import op

revision = "20261129_summary_rollups"
down_revision = "20261129_open311"

LOCAL_DAY = "(({column}) AT TIME ZONE metrics.office_timezone())::date"


def upgrade() -> None:
    op.create_table(
        "period_counts",
        sa.Column("grain", sa.String(length=1), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "start", "measure", "key",
                                name=op.f("pk_period_counts")),
        schema="metrics",
    )
    op.create_table(
        "duration_histograms",
        sa.Column("grain", sa.String(length=1), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "start", "measure", "key", "bucket",
                                name=op.f("pk_duration_histograms")),
        schema="metrics",
    )
    op.add_column("cases", sa.Column("closed_after_days", sa.Integer(), nullable=True),
                  schema="metrics")
    op.add_column("transitions", sa.Column("answered_after_hours", sa.Integer(), nullable=True),
                  schema="metrics")
    op.execute("""
        INSERT INTO metrics.period_counts (grain, start, measure, key, n)
        SELECT g.grain, date_trunc(g.unit, d.day)::date, d.measure, d.key, sum(d.n)
        FROM metrics.daily_counts d
        CROSS JOIN (VALUES ('m', 'month'), ('y', 'year')) AS g (grain, unit)
        GROUP BY 1, 2, 3, 4""")
    op.execute("""
        UPDATE metrics.cases
        SET closed_after_days = floor(extract(epoch FROM closed_at - received_at) / 86400)
        WHERE closed_at IS NOT NULL""")
    op.execute("""
        UPDATE metrics.transitions r
        SET answered_after_hours = floor(extract(epoch FROM r.at - q.at) / 3600)
        FROM metrics.transitions q
        WHERE r.action = 'respond' AND q.case_id = r.case_id AND q.version = r.version - 1
          AND q.action = 'request_clarification'""")
    op.execute(f"""
        INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n)
        SELECT g.grain, date_trunc(g.unit, s.day)::date, s.measure, s.key, s.bucket, count(*)
        FROM (
          SELECT {LOCAL_DAY.format(column="closed_at")} AS day, 'days_to_close' AS measure,
                 closure_stage AS key, closed_after_days AS bucket
          FROM metrics.cases WHERE closed_after_days IS NOT NULL AND closure_stage IS NOT NULL
          UNION ALL
          SELECT {LOCAL_DAY.format(column="at")}, 'response_hours', agency, answered_after_hours
          FROM metrics.transitions WHERE answered_after_hours IS NOT NULL
        ) AS s
        CROSS JOIN (VALUES ('d', 'day'), ('m', 'month'), ('y', 'year')) AS g (grain, unit)
        GROUP BY 1, 2, 3, 4, 5""")
    op.create_index("ix_metrics_cases_days_to_close", "cases",
                    ["closure_stage", "closed_after_days", "closed_at"], schema="metrics",
                    postgresql_where=sa.text("closed_after_days IS NOT NULL"))
    op.create_index("ix_metrics_transitions_response_hours", "transitions",
                    ["agency", "answered_after_hours", "at"], schema="metrics",
                    postgresql_where=sa.text("answered_after_hours IS NOT NULL"))
    op.create_index("ix_contacts_on_the_spot_place", "contacts", ["place", "received_at"],
                    schema="metrics",
                    postgresql_where=sa.text("channel = 'on_the_spot' AND place IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_contacts_on_the_spot_place", "contacts", schema="metrics")
    op.drop_index("ix_metrics_transitions_response_hours", "transitions", schema="metrics")
    op.drop_index("ix_metrics_cases_days_to_close", "cases", schema="metrics")
    op.drop_column("transitions", "answered_after_hours", schema="metrics")
    op.drop_column("cases", "closed_after_days", schema="metrics")
    op.drop_table("duration_histograms", schema="metrics")
    op.drop_table("period_counts", schema="metrics")
