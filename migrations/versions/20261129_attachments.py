"""Attachments: evidence files of a complaint, their bytes kept in pieces in PostgreSQL."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261129_attachments"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("complaint_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("confidential", sa.Boolean(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["complaint_id"], ["intake.complaints.id"],
                                name=op.f("fk_attachments_complaint_id_complaints"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
        sa.UniqueConstraint("seq", name=op.f("uq_attachments_seq")),
        schema="intake",
    )
    op.create_index("ix_attachments_complaint_seq", "attachments", ["complaint_id", "seq"],
                    schema="intake")
    op.create_table(
        "attachment_chunks",
        sa.Column("attachment_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["attachment_id"], ["intake.attachments.id"],
                                name=op.f("fk_attachment_chunks_attachment_id_attachments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("attachment_id", "seq", name=op.f("pk_attachment_chunks")),
        schema="intake",
    )
    # PDFs, JPEGs, PNGs and WebPs are compressed already: keep PostgreSQL from trying again.
    op.execute("ALTER TABLE intake.attachment_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("attachment_chunks", schema="intake")
    op.drop_index("ix_attachments_complaint_seq", table_name="attachments", schema="intake")
    op.drop_table("attachments", schema="intake")
