"""The metrics service publishes nothing: its empty ``metrics.outbox`` goes.

It was made with every service's event tables; the metrics worker only reads events, so no row
was ever written to it, no relay read it and no reader follows it as a log. Its processed-event,
log-position and dead-letter tables stay.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "20261129_drop_metrics_outbox"
down_revision = "20261129_liaison_counts"


def upgrade() -> None:
    op.drop_index("ix_metrics_outbox_unsequenced", table_name="outbox", schema="metrics")
    op.drop_index("ix_metrics_outbox_unpublished", table_name="outbox", schema="metrics")
    op.drop_table("outbox", schema="metrics")


def downgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("envelope", JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("trace_context", JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        sa.UniqueConstraint("position", name="uq_outbox_position"),
        schema="metrics",
    )
    op.create_index("ix_metrics_outbox_unpublished", "outbox", ["id"], schema="metrics",
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_index("ix_metrics_outbox_unsequenced", "outbox", ["id"], schema="metrics",
                    postgresql_where=sa.text("position IS NULL"))
