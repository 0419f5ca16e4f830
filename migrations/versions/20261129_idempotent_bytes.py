"""Idempotency keys keep the first response's body as sent, byte for byte.

JSONB reorders keys; a replay must return the same body, so it is kept as text.
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("ALTER TABLE intake.idempotency_keys "
               "ALTER COLUMN response TYPE text USING response::text")


def downgrade() -> None:
    op.execute("ALTER TABLE intake.idempotency_keys "
               "ALTER COLUMN response TYPE jsonb USING response::jsonb")
