"""Subscriptions of tokens revoked before revocation stopped them: stopped now.

``aduan token revoke`` disables a token's webhook subscriptions and fails their pending
deliveries. Tokens revoked before it did (or straight in the database) left theirs "active",
their deliveries "pending"; none is sent (the dispatcher checks the owner's token), but an
administrator listing them should read what is true.
"""

from alembic import op

revision = "20261130_revoked_owners_hooks"
down_revision = "20261130_summary_reads"

REASON = "the owner's token was revoked"
QUOTED = REASON.replace("'", "''")


def upgrade() -> None:
    op.execute(f"""
        WITH stopped AS (
            UPDATE intake.webhook_subscriptions s
               SET active = false, disabled_reason = '{QUOTED}'
             WHERE s.active AND EXISTS (SELECT 1 FROM auth.tokens t
                                        WHERE t.name = s.owner AND t.revoked_at IS NOT NULL)
            RETURNING s.id)
        UPDATE intake.webhook_deliveries d
           SET status = 'failed', next_attempt_at = NULL,
               last_error = 'subscription disabled: {QUOTED}'
          FROM stopped WHERE d.subscription_id = stopped.id AND d.status = 'pending'""")


def downgrade() -> None:
    pass  # which subscriptions were active before cannot be told from the rows
