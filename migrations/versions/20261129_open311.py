"""Open311 GeoReport v2 requests: the coordinates, address and media URL a civic client sent."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261129_open311"
down_revision = "20261129_attachments"


def upgrade() -> None:
    op.create_table(
        "open311_requests",
        sa.Column("complaint_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("long", sa.Double(), nullable=True),
        sa.Column("address_string", sa.Text(), nullable=True),
        sa.Column("address_id", sa.String(length=255), nullable=True),
        sa.Column("media_url", sa.Text(), nullable=True),
        sa.Column("device_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["complaint_id"], ["intake.complaints.id"],
                                name=op.f("fk_open311_requests_complaint_id_complaints"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("complaint_id", name=op.f("pk_open311_requests")),
        schema="intake",
    )


def downgrade() -> None:
    op.drop_table("open311_requests", schema="intake")
