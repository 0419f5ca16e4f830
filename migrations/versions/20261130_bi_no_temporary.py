"""BI logins may write nowhere: ``TEMPORARY`` on aduan's database is taken from ``PUBLIC``.

PostgreSQL lets every role make temporary tables in a database unless told otherwise, and a
read-only session can still ``BEGIN READ WRITE``. The role the migrations run as (aduan's own)
keeps the privilege. Without the right to change the database's ACL (not its owner) the step
warns and goes on; ``services/bi_users.py`` tries again whenever a BI login is made.
"""

from alembic import op

revision = "20261130_bi_no_temporary"
down_revision = "20261129_hour_histograms"


def upgrade() -> None:
    op.execute("""
        DO $$
        BEGIN
          EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER', current_database());
          EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXCEPTION WHEN insufficient_privilege THEN
          RAISE WARNING 'aduan: only the owner of database % can take TEMPORARY from PUBLIC',
                        current_database();
        END $$""")


def downgrade() -> None:
    op.execute("""
        DO $$
        BEGIN
          EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
        EXCEPTION WHEN insufficient_privilege THEN
          NULL;
        END $$""")
