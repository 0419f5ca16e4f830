"""Read-only SQL views for BI tools in the ``metrics`` schema, and the ``aduan_bi`` role.

The view columns are a published interface (Metabase, Superset and the like read them): add
columns in new migrations, never rename or drop them.
"""

from alembic import op

revision = "0002"
down_revision = "0001"

BI_ROLE = "aduan_bi"

VIEWS = {
    "bi_contacts": """
        SELECT complaint_id, kind, channel, substance, agency AS agency_code, received_at,
               (received_at AT TIME ZONE metrics.office_timezone())::date AS received_local_date,
               to_char(received_at AT TIME ZONE metrics.office_timezone(), 'YYYY-MM')
                 AS received_month,
               kind IN ('report', 'rapid_response', 'own_initiative') AS is_received_report,
               place AS on_the_spot_place
        FROM metrics.contacts""",
    "bi_cases": """
        SELECT case_id, kind, channel, substance, agency AS agency_code, received_at,
               (received_at AT TIME ZONE metrics.office_timezone())::date AS received_local_date,
               to_char(received_at AT TIME ZONE metrics.office_timezone(), 'YYYY-MM')
                 AS received_month,
               extract(year FROM received_at AT TIME ZONE metrics.office_timezone())::int
                 AS received_year,
               status, registered_at, examination_at AS examination_started_at, closed_at,
               (closed_at AT TIME ZONE metrics.office_timezone())::date AS closed_local_date,
               to_char(closed_at AT TIME ZONE metrics.office_timezone(), 'YYYY-MM')
                 AS closed_month,
               closure_stage, closure_reason,
               CASE WHEN closed_at IS NULL THEN NULL
                    ELSE extract(epoch FROM closed_at - received_at) / 86400.0 END
                 AS days_to_close
        FROM metrics.cases""",
    "bi_transitions": """
        SELECT case_id, version, action, from_status, to_status, at AS effective_at,
               (at AT TIME ZONE metrics.office_timezone())::date AS effective_local_date,
               to_char(at AT TIME ZONE metrics.office_timezone(), 'YYYY-MM') AS effective_month,
               agency AS agency_code, reason, closure_stage, due_at, resolution
        FROM metrics.transitions""",
    "bi_targets": """
        SELECT period, closures AS closures_target,
               examination_closures AS examination_closures_target, updated_at
        FROM metrics.targets""",
}


def upgrade() -> None:
    op.execute("""
        CREATE TABLE metrics.office (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            timezone text NOT NULL DEFAULT 'Asia/Jakarta'
        )""")
    op.execute("INSERT INTO metrics.office DEFAULT VALUES")
    op.execute("""
        CREATE FUNCTION metrics.office_timezone() RETURNS text
        LANGUAGE sql STABLE AS $$ SELECT timezone FROM metrics.office $$""")
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW metrics.{name} AS {query}")
    # A group role for BI logins: it sees the views and nothing else. Roles are cluster-wide,
    # and creating one needs CREATEROLE; without it the views are still made.
    op.execute(f"""
        DO $$
        BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{BI_ROLE}') THEN
            CREATE ROLE {BI_ROLE} NOLOGIN;
          END IF;
        EXCEPTION WHEN insufficient_privilege THEN
          RAISE NOTICE 'no privilege to create role {BI_ROLE}; grant the views by hand';
        END $$""")
    views = ", ".join(f"metrics.{name}" for name in VIEWS)
    op.execute(f"""
        DO $$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{BI_ROLE}') THEN
            GRANT USAGE ON SCHEMA metrics TO {BI_ROLE};
            GRANT SELECT ON {views} TO {BI_ROLE};
            GRANT EXECUTE ON FUNCTION metrics.office_timezone() TO {BI_ROLE};
          END IF;
        END $$""")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS metrics.{name}")
    op.execute("DROP FUNCTION IF EXISTS metrics.office_timezone()")
    op.execute("DROP TABLE IF EXISTS metrics.office")
