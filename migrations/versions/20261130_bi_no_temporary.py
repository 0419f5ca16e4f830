"""BI logins may write nowhere: ``TEMPORARY`` on aduan's database is taken from ``PUBLIC``.

PostgreSQL lets every role make temporary tables in a database unless told otherwise, and a
read-only session can still ``BEGIN READ WRITE``. The role the migrations run as (aduan's own)
keeps the privilege. Only the database's owner (or a superuser) can take it: anyone else's
REVOKE succeeds without effect, with a WARNING neither the driver nor alembic report. So the
step checks who it runs as and what the ACL says afterwards, and logs a warning when ``PUBLIC``
still holds ``TEMPORARY``; ``services/bi_users.py`` tries again whenever a BI login is made.

The downgrade gives ``PUBLIC`` back PostgreSQL's default (``TEMPORARY``): whether an
administrator had taken it away before the upgrade is not recorded, so one who had must revoke
it again after downgrading.
"""

import logging

from alembic import op
from sqlalchemy import text

revision = "20261130_bi_no_temporary"
down_revision = "20261129_hour_histograms"

logger = logging.getLogger("alembic.runtime.migration")

MAY_CHANGE_DATABASE_ACL = """
    SELECT pg_has_role(current_user, d.datdba, 'MEMBER')
           OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user)
    FROM pg_database d WHERE d.datname = current_database()"""
PUBLIC_MAY_MAKE_TEMPORARY = """
    SELECT EXISTS (
      SELECT FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
      WHERE d.datname = current_database() AND a.grantee = 0
        AND a.privilege_type = 'TEMPORARY')"""


def upgrade() -> None:
    connection = op.get_bind()
    if connection.execute(text(MAY_CHANGE_DATABASE_ACL)).scalar():
        op.execute("""
            DO $$
            BEGIN
              EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER',
                             current_database());
              EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
            END $$""")
    if connection.execute(text(PUBLIC_MAY_MAKE_TEMPORARY)).scalar():
        database = connection.execute(text("SELECT current_database()")).scalar()
        logger.warning("aduan: PUBLIC may still create temporary tables in database %s (only "
                       "its owner or a superuser can take TEMPORARY away): as its owner, run "
                       "REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC; (docs/bi.md)",
                       database, database)


def downgrade() -> None:
    if op.get_bind().execute(text(MAY_CHANGE_DATABASE_ACL)).scalar():
        op.execute("""
            DO $$
            BEGIN
              EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
            END $$""")
