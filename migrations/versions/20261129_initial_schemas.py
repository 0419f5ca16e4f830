"""Initial schemas: auth, intake, cases, metrics, each with its outbox and tracking tables."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None


SCHEMAS = ("auth", "intake", "cases", "metrics")


EVENT_SCHEMAS = ("cases", "intake", "metrics")


def _create_event_tables(schema: str) -> None:
    """The outbox, processed-event, log-position and dead-letter tables of one service."""
    op.create_table(
        "outbox",
        sa.Column("position", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("envelope", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
        schema=schema,
    )
    op.create_index(
        f"ix_{schema}_outbox_unpublished",
        "outbox",
        ["position"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
        schema=schema,
    )
    op.create_table(
        "log_positions",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("log", sa.String(length=200), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "log", name=op.f("pk_log_positions")),
        schema=schema,
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("log", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        schema=schema,
    )


def _drop_event_tables(schema: str) -> None:
    for table in ("dead_letters", "log_positions", "processed_events", "outbox"):
        op.drop_table(table, schema=schema)


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for schema in EVENT_SCHEMAS:
        _create_event_tables(schema)
    op.create_table(
        "tokens",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("agency_code", sa.String(length=64), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
        schema="auth",
    )
    op.create_table(
        "agencies",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("complaints", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_agencies")),
        schema="cases",
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tracking_number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("substance", sa.String(length=64), nullable=False),
        sa.Column("reported_agency_code", sa.String(length=64), nullable=False),
        sa.Column("reported_agency_name", sa.Text(), nullable=False),
        sa.Column("reporter", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("incident_date", sa.Date(), nullable=True),
        sa.Column("reported_to_agency_first", sa.Boolean(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("assignee", sa.String(length=100), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("complexity", sa.String(length=16), nullable=True),
        sa.Column("closure_stage", sa.String(length=16), nullable=True),
        sa.Column("closure_reason", sa.String(length=64), nullable=True),
        sa.Column("maladministration", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("transferred_to", sa.Text(), nullable=True),
        sa.Column("last_transition_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("seq", name=op.f("uq_cases_seq")),
        schema="cases",
    )
    op.create_index(
        "ix_cases_agency_status",
        "cases",
        ["reported_agency_code", "status"],
        unique=False,
        schema="cases",
    )
    op.create_index(
        "ix_cases_awaiting_completion_due",
        "cases",
        ["due_at"],
        unique=False,
        schema="cases",
        postgresql_where=sa.text("status = 'awaiting_completion'"),
    )
    op.create_index(
        op.f("ix_cases_cases_assignee"), "cases", ["assignee"], unique=False, schema="cases"
    )
    op.create_index(
        op.f("ix_cases_cases_status"), "cases", ["status"], unique=False, schema="cases"
    )
    op.create_table(
        "complaints",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tracking_number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("substance", sa.String(length=64), nullable=False),
        sa.Column("reporter", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reported_agency_code", sa.String(length=64), nullable=False),
        sa.Column("reported_agency_name", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("incident_date", sa.Date(), nullable=True),
        sa.Column("reported_to_agency_first", sa.Boolean(), nullable=True),
        sa.Column("location", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("external_reference", sa.String(length=255), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("case_version", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sa.UniqueConstraint("seq", name=op.f("uq_complaints_seq")),
        sa.UniqueConstraint("tracking_number", name=op.f("uq_complaints_tracking_number")),
        schema="intake",
    )
    op.create_index(
        op.f("ix_intake_complaints_reported_agency_code"),
        "complaints",
        ["reported_agency_code"],
        unique=False,
        schema="intake",
    )
    op.create_index(
        op.f("ix_intake_complaints_status"), "complaints", ["status"], unique=False, schema="intake"
    )
    op.create_index(
        op.f("ix_intake_complaints_submitted_by"),
        "complaints",
        ["submitted_by"],
        unique=False,
        schema="intake",
    )
    op.create_index(
        "uq_complaints_submitter_external_reference",
        "complaints",
        ["submitted_by", "external_reference"],
        unique=True,
        schema="intake",
        postgresql_where=sa.text("external_reference IS NOT NULL"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("caller", "key", name=op.f("pk_idempotency_keys")),
        schema="intake",
    )
    op.create_table(
        "tracking_counters",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_tracking_counters")),
        schema="intake",
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("substance", sa.String(length=64), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_status", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("examination_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closure_stage", sa.String(length=16), nullable=True),
        sa.Column("closure_reason", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_cases")),
        schema="metrics",
    )
    op.create_index(
        "ix_metrics_cases_closed_at", "cases", ["closed_at"], unique=False, schema="metrics"
    )
    op.create_index(
        "ix_metrics_cases_received_at", "cases", ["received_at"], unique=False, schema="metrics"
    )
    op.create_table(
        "contacts",
        sa.Column("complaint_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("substance", sa.String(length=64), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("complaint_id", name=op.f("pk_contacts")),
        schema="metrics",
    )
    op.create_index(
        "ix_contacts_received_at", "contacts", ["received_at"], unique=False, schema="metrics"
    )
    op.create_table(
        "targets",
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("closures", sa.Integer(), nullable=True),
        sa.Column("examination_closures", sa.Integer(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_targets")),
        schema="metrics",
    )
    op.create_table(
        "transitions",
        sa.Column("case_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=False),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("closure_stage", sa.String(length=16), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("case_id", "version", name=op.f("pk_transitions")),
        schema="metrics",
    )
    op.create_index(
        "ix_metrics_transitions_action_at",
        "transitions",
        ["action", "at"],
        unique=False,
        schema="metrics",
    )
    op.create_index(
        "ix_metrics_transitions_at", "transitions", ["at"], unique=False, schema="metrics"
    )
    op.create_table(
        "transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("case_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=False),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.cases.id"], name=op.f("fk_transitions_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transitions")),
        schema="cases",
    )
    op.create_index(
        op.f("ix_cases_transitions_case_id"),
        "transitions",
        ["case_id"],
        unique=False,
        schema="cases",
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cases_transitions_case_id"), table_name="transitions", schema="cases")
    op.drop_table("transitions", schema="cases")
    op.drop_index("ix_metrics_transitions_at", table_name="transitions", schema="metrics")
    op.drop_index("ix_metrics_transitions_action_at", table_name="transitions", schema="metrics")
    op.drop_table("transitions", schema="metrics")
    op.drop_table("targets", schema="metrics")
    op.drop_index("ix_contacts_received_at", table_name="contacts", schema="metrics")
    op.drop_table("contacts", schema="metrics")
    op.drop_index("ix_metrics_cases_received_at", table_name="cases", schema="metrics")
    op.drop_index("ix_metrics_cases_closed_at", table_name="cases", schema="metrics")
    op.drop_table("cases", schema="metrics")
    op.drop_table("tracking_counters", schema="intake")
    op.drop_table("idempotency_keys", schema="intake")
    op.drop_index(
        "uq_complaints_submitter_external_reference",
        table_name="complaints",
        schema="intake",
        postgresql_where=sa.text("external_reference IS NOT NULL"),
    )
    op.drop_index(
        op.f("ix_intake_complaints_submitted_by"), table_name="complaints", schema="intake"
    )
    op.drop_index(op.f("ix_intake_complaints_status"), table_name="complaints", schema="intake")
    op.drop_index(
        op.f("ix_intake_complaints_reported_agency_code"), table_name="complaints", schema="intake"
    )
    op.drop_table("complaints", schema="intake")
    op.drop_index(op.f("ix_cases_cases_status"), table_name="cases", schema="cases")
    op.drop_index(op.f("ix_cases_cases_assignee"), table_name="cases", schema="cases")
    op.drop_index(
        "ix_cases_awaiting_completion_due",
        table_name="cases",
        schema="cases",
        postgresql_where=sa.text("status = 'awaiting_completion'"),
    )
    op.drop_index("ix_cases_agency_status", table_name="cases", schema="cases")
    op.drop_table("cases", schema="cases")
    op.drop_table("agencies", schema="cases")
    op.drop_table("tokens", schema="auth")
    for schema in EVENT_SCHEMAS:
        _drop_event_tables(schema)
    for schema in reversed(SCHEMAS):
        op.execute(f"DROP SCHEMA IF EXISTS {schema}")
