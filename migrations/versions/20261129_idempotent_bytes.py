"""Idempotency keys keep the first response's body as sent, byte for byte.

JSONB reorders keys; a replay must return the same body, so it is kept as text.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE intake.idempotency_keys "
               "ALTER COLUMN response TYPE text USING response::text")


def downgrade() -> None:
    op.execute("ALTER TABLE intake.idempotency_keys "
               "ALTER COLUMN response TYPE jsonb USING response::jsonb")
