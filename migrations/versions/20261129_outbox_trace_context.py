"""Outbox rows keep the W3C trace context of the request that wrote them.

The relay sends it as Kafka record headers; the database event log hands it to consumers.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "20261129_outbox_trace_context"
down_revision = "20261129_summary_rollups"

SCHEMAS = ("intake", "cases", "metrics")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.add_column("outbox", sa.Column("trace_context", JSONB), schema=schema)


def downgrade() -> None:
    for schema in SCHEMAS:
        op.drop_column("outbox", "trace_context", schema=schema)
