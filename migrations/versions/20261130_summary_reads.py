"""An index of ``metrics.period_counts`` by measure before month or year.

A summary reads a few measures of many months or years ("everything before the period" for
the running measures, its places, its received reports by month), and the monthly figures read
three or four measures of a range of months. On the primary key, whose month or year comes
before the measure, such a read walks every measure of each month or year: since the monthly
measures doubled the rows, the planner priced it high enough to start parallel workers for a
month's summary, whose start-up cost more than the whole read (see docs/benchmarks.md).
"""

from alembic import op

revision = "20261130_summary_reads"
down_revision = "20261130_bi_no_large_objects"


def upgrade() -> None:
    op.create_index("ix_period_counts_measure", "period_counts",
                    ["grain", "measure", "start", "key"], schema="metrics")


def downgrade() -> None:
    op.drop_index("ix_period_counts_measure", "period_counts", schema="metrics")
