"""Outbox rows keep the W3C trace context of the request that wrote them.

The relay sends it as Kafka record headers; the database event log hands it to consumers.

Revision ID: 20261129_outbox_trace_context
Revises: 20261129_summary_rollups
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "20261129_outbox_trace_context"
down_revision: str | None = "20261129_summary_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("intake", "cases", "metrics")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.add_column("outbox", sa.Column("trace_context", JSONB), schema=schema)


def downgrade() -> None:
    for schema in SCHEMAS:
        op.drop_column("outbox", "trace_context", schema=schema)
