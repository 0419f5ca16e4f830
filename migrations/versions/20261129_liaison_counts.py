"""Distinct places and liaison figures from the daily counts; medians read from an index alone.

- ``daily_counts.key`` and ``period_counts.key`` become ``text``: a key may now be an
  on-the-spot place (up to 300 characters as typed, longer once normalised).
- new measures (see ``metrics_worker.counts``): ``on_the_spot_place`` (by place),
  ``clarification_requested``, ``overdue_from`` and ``overdue_ended`` (by agency asked), filled
  by day, month and year from the rows already there.
- ``ix_metrics_cases_days_to_close`` carries ``received_at``, so the exact median of days to
  close reads its one bucket from the index without visiting the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "20261129_liaison_counts"
down_revision = "20261129_bi_grants"

MEASURES = ("on_the_spot_place", "clarification_requested", "overdue_from", "overdue_ended")
# metrics_worker.counts.PLACE_AND_LIAISON_INCREMENTS as of this revision.
INCREMENTS = """
  SELECT received_at AS at, 'on_the_spot_place' AS measure, place AS key
  FROM metrics.contacts WHERE channel = 'on_the_spot' AND place IS NOT NULL
  UNION ALL
  SELECT at, 'clarification_requested', agency FROM metrics.transitions
  WHERE action = 'request_clarification'
  UNION ALL
  SELECT greatest(at, due_at), 'overdue_from', agency FROM metrics.transitions
  WHERE action = 'request_clarification' AND due_at IS NOT NULL
  UNION ALL
  SELECT greatest(q.at, q.due_at, n.at), 'overdue_ended', q.agency
  FROM metrics.transitions q
  JOIN metrics.transitions n ON n.case_id = q.case_id AND n.version = q.version + 1
  WHERE q.action = 'request_clarification' AND q.due_at IS NOT NULL"""


def upgrade() -> None:
    for table in ("daily_counts", "period_counts"):
        op.alter_column(table, "key", type_=sa.Text(), existing_type=sa.String(length=64),
                        existing_nullable=False, schema="metrics")
    op.execute(f"""
        INSERT INTO metrics.daily_counts (day, measure, key, n)
        SELECT (i.at AT TIME ZONE metrics.office_timezone())::date, i.measure, i.key, count(*)
        FROM ({INCREMENTS}) AS i GROUP BY 1, 2, 3""")
    op.execute(f"""
        INSERT INTO metrics.period_counts (grain, start, measure, key, n)
        SELECT g.grain, date_trunc(g.unit, d.day)::date, d.measure, d.key, sum(d.n)
        FROM metrics.daily_counts d
        CROSS JOIN (VALUES ('m', 'month'), ('y', 'year')) AS g (grain, unit)
        WHERE d.measure IN {MEASURES}
        GROUP BY 1, 2, 3, 4""")
    op.drop_index("ix_metrics_cases_days_to_close", "cases", schema="metrics")
    op.create_index("ix_metrics_cases_days_to_close", "cases",
                    ["closure_stage", "closed_after_days", "closed_at"], schema="metrics",
                    postgresql_include=["received_at"],
                    postgresql_where=sa.text("closed_after_days IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_metrics_cases_days_to_close", "cases", schema="metrics")
    op.create_index("ix_metrics_cases_days_to_close", "cases",
                    ["closure_stage", "closed_after_days", "closed_at"], schema="metrics",
                    postgresql_where=sa.text("closed_after_days IS NOT NULL"))
    for table in ("period_counts", "daily_counts"):
        op.execute(f"DELETE FROM metrics.{table} WHERE measure IN {MEASURES}")
        op.alter_column(table, "key", type_=sa.String(length=64), existing_type=sa.Text(),
                        existing_nullable=False, schema="metrics")
