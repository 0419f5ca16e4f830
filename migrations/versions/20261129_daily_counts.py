"""Daily counts: the metrics read model's running totals, so a summary never scans all cases.

Every figure that is a count over a period, or a count of cases open at a moment, is a sum of
per-day increments (a case open at a moment is one received before it and not closed before
it). The projection adds to these rows in the transaction of each event.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "daily_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("measure", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "measure", "key", name=op.f("pk_daily_counts")),
        schema="metrics",
    )
    op.create_index("ix_daily_counts_measure_day", "daily_counts", ["measure", "day"],
                    schema="metrics")
    op.create_index("ix_contacts_on_the_spot", "contacts", ["received_at"], schema="metrics",
                    postgresql_where=sa.text("channel = 'on_the_spot'"))
    op.create_index("ix_metrics_transitions_clarifications", "transitions", ["agency", "at"],
                    schema="metrics",
                    postgresql_where=sa.text("action = 'request_clarification'"))


def downgrade() -> None:
    op.drop_index("ix_metrics_transitions_clarifications", "transitions", schema="metrics")
    op.drop_index("ix_contacts_on_the_spot", "contacts", schema="metrics")
    op.drop_table("daily_counts", schema="metrics")
