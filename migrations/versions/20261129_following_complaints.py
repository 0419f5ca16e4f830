"""Following a complaint: the case's outcome and the access code on intake, the facts on the case.

Existing rows are filled from the other schema once, here, so that old complaints show their
outcome and old cases their facts; from now on each service learns them from events.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"

OUTCOME_COLUMNS = (
    ("case_updated_at", sa.DateTime(timezone=True)),
    ("due_at", sa.DateTime(timezone=True)),
    ("closure_stage", sa.String(length=16)),
    ("closure_reason", sa.String(length=64)),
    ("resolution", sa.String(length=16)),
    ("transferred_to", sa.Text()),
    ("closed_at", sa.DateTime(timezone=True)),
    ("access_code_hash", sa.String(length=64)),
)


def upgrade() -> None:
    for name, type_ in OUTCOME_COLUMNS:
        op.add_column("complaints", sa.Column(name, type_, nullable=True), schema="intake")
    op.add_column("cases", sa.Column("description", sa.Text(), nullable=True), schema="cases")
    op.add_column("cases", sa.Column("location", postgresql.JSONB(astext_type=sa.Text()),
                                     nullable=True), schema="cases")
    op.execute("""
        UPDATE intake.complaints i
        SET case_updated_at = c.last_transition_at, due_at = c.due_at,
            closure_stage = c.closure_stage, closure_reason = c.closure_reason,
            resolution = c.resolution, transferred_to = c.transferred_to,
            closed_at = c.closed_at
        FROM cases.cases c WHERE c.id = i.id
    """)
    op.execute("""
        UPDATE cases.cases c SET description = i.description, location = i.location
        FROM intake.complaints i WHERE i.id = c.id
    """)


def downgrade() -> None:
    op.drop_column("cases", "location", schema="cases")
    op.drop_column("cases", "description", schema="cases")
    for name, _ in reversed(OUTCOME_COLUMNS):
        op.drop_column("complaints", name, schema="intake")
