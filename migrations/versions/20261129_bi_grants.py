"""BI logins can read every ``metrics.bi_*`` view: the office's time zone is read for them.

``metrics.office_timezone()`` ran with the caller's rights, so the views that call it failed
for ``aduan_bi`` (``permission denied for table office``). It now runs with its owner's rights,
reading only that one value, and only ``aduan_bi`` (besides its owner) may call it.
"""

from alembic import op

revision = "20261129_bi_grants"
down_revision = "20261129_webhooks"

BI_ROLE = "aduan_bi"


def upgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION metrics.office_timezone() RETURNS text
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $$ SELECT timezone FROM metrics.office $$""")
    op.execute("REVOKE EXECUTE ON FUNCTION metrics.office_timezone() FROM PUBLIC")
    op.execute(f"""
        DO $$
        BEGIN
          IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{BI_ROLE}') THEN
            GRANT EXECUTE ON FUNCTION metrics.office_timezone() TO {BI_ROLE};
          END IF;
        END $$""")


def downgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION metrics.office_timezone() RETURNS text
        LANGUAGE sql STABLE
        AS $$ SELECT timezone FROM metrics.office $$""")
    op.execute("GRANT EXECUTE ON FUNCTION metrics.office_timezone() TO PUBLIC")
