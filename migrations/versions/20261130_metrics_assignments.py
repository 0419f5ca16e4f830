"""``metrics.assignments``: every ``assign_agency`` applied, so that ``as_of`` moves on with
it and ``bi_transitions`` lists it with the case's steps (``docs/bi.md``).

Assignments applied before this revision have no row until ``aduan metrics rebuild``.
The view keeps its columns and their types (``CREATE OR REPLACE`` keeps its grants).
"""

from alembic import op

revision = "20261130_metrics_assignments"
down_revision = "20261130_monthly_counts"

STEPS = """
        SELECT case_id, version, action, from_status, to_status, at AS effective_at,
               (at AT TIME ZONE metrics.office_timezone())::date AS effective_local_date,
               to_char(at AT TIME ZONE metrics.office_timezone(), 'YYYY-MM') AS effective_month,
               agency AS agency_code, reason, closure_stage, due_at, resolution
        FROM metrics.transitions"""
ASSIGNMENTS = """
        SELECT case_id, version, 'assign_agency'::varchar(32), status, status, at,
               (at AT TIME ZONE metrics.office_timezone())::date,
               to_char(at AT TIME ZONE metrics.office_timezone(), 'YYYY-MM'),
               agency, NULL::varchar(64), NULL::varchar(16), NULL::timestamptz,
               NULL::varchar(16)
        FROM metrics.assignments"""


def upgrade() -> None:
    op.execute("""
        CREATE TABLE metrics.assignments (
            case_id uuid NOT NULL,
            version integer NOT NULL,
            status varchar(32) NOT NULL,
            at timestamptz NOT NULL,
            agency varchar(64) NOT NULL,
            CONSTRAINT pk_assignments PRIMARY KEY (case_id, version)
        )""")
    op.execute("CREATE INDEX ix_metrics_assignments_at ON metrics.assignments (at)")
    op.execute(f"CREATE OR REPLACE VIEW metrics.bi_transitions AS {STEPS} UNION ALL {ASSIGNMENTS}")


def downgrade() -> None:
    op.execute(f"CREATE OR REPLACE VIEW metrics.bi_transitions AS {STEPS}")
    op.execute("DROP TABLE metrics.assignments")
