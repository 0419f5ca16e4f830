"""A response to a clarification request carries when the request was made.

``transitions.asked_at`` (on a ``respond`` answering a request) is included in
``ix_metrics_transitions_response_hours``, so the exact median of response hours reads its one
bucket from the index alone instead of joining every response to its request. Filled from the
rows already there.
"""

import sqlalchemy as sa
from alembic import op

revision = "20261129_response_asked_at"
down_revision = "20261129_drop_metrics_outbox"


def upgrade() -> None:
    op.add_column("transitions", sa.Column("asked_at", sa.DateTime(timezone=True), nullable=True),
                  schema="metrics")
    op.execute("""
        UPDATE metrics.transitions r SET asked_at = q.at
        FROM metrics.transitions q
        WHERE r.answered_after_hours IS NOT NULL
          AND q.case_id = r.case_id AND q.version = r.version - 1""")
    op.drop_index("ix_metrics_transitions_response_hours", "transitions", schema="metrics")
    op.create_index("ix_metrics_transitions_response_hours", "transitions",
                    ["agency", "answered_after_hours", "at"], schema="metrics",
                    postgresql_include=["asked_at"],
                    postgresql_where=sa.text("answered_after_hours IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_metrics_transitions_response_hours", "transitions", schema="metrics")
    op.create_index("ix_metrics_transitions_response_hours", "transitions",
                    ["agency", "answered_after_hours", "at"], schema="metrics",
                    postgresql_where=sa.text("answered_after_hours IS NOT NULL"))
    op.drop_column("transitions", "asked_at", schema="metrics")
