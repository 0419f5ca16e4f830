"""BI logins may write nowhere: the large-object writers are taken from ``PUBLIC``.

PostgreSQL lets every role create and write large objects (``lo_from_bytea``, ``lo_create``,
``lowrite``, ...), stored in ``pg_largeobject`` whatever the session's read-only default, since
a session can ``BEGIN READ WRITE``. aduan stores none, so ``EXECUTE`` on them is taken from
``PUBLIC`` in aduan's database (function privileges are per database) and given to nobody.
Only a superuser can: the functions belong to the bootstrap superuser and anyone else's REVOKE
succeeds without effect, with a WARNING neither the driver nor alembic report. So the step
checks who it runs as and what the ACLs say afterwards, and logs a warning with the statement
to run while ``PUBLIC`` still holds some; ``services/bi_users.py`` tries again whenever a BI
login is made.

The downgrade gives ``PUBLIC`` back PostgreSQL's defaults (all but ``lo_import`` and
``lo_export``, which are no one's by default).
"""

import logging

from alembic import op
from sqlalchemy import text

revision = "20261130_bi_no_large_objects"
down_revision = "20261130_metrics_assignments"

logger = logging.getLogger("alembic.runtime.migration")

# As services/bi_users.py: a migration stays as it was written when the code moves on.
WRITERS = ("lo_creat", "lo_create", "lo_from_bytea", "lo_put", "lowrite", "lo_truncate",
           "lo_truncate64", "lo_unlink", "lo_import", "lo_export")
PUBLIC_BY_DEFAULT = tuple(name for name in WRITERS if name not in {"lo_import", "lo_export"})
IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _each(names: tuple[str, ...], statement: str) -> str:
    return f"""
        DO $$
        DECLARE f regprocedure;
        BEGIN
          FOR f IN SELECT p.oid FROM pg_proc p
                   WHERE p.pronamespace = 'pg_catalog'::regnamespace
                     AND p.proname IN ({_names(names)})
          LOOP
            EXECUTE format('{statement}', f);
          END LOOP;
        END $$"""


def upgrade() -> None:
    connection = op.get_bind()
    if connection.execute(text(IS_SUPERUSER)).scalar():
        op.execute(_each(WRITERS, "REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC"))
    left = connection.execute(text(f"""
        SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '
                                   ORDER BY p.oid::regprocedure::text), '')
        FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname IN ({_names(WRITERS)})
          AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'""")).scalar()
    if left:
        database = connection.execute(text("SELECT current_database()")).scalar()
        logger.warning("aduan: PUBLIC may still write large objects in database %s (only a "
                       "superuser can take the functions away): as a superuser, connected to "
                       "%s, run REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC; (docs/bi.md)",
                       database, database, left)


def downgrade() -> None:
    if op.get_bind().execute(text(IS_SUPERUSER)).scalar():
        op.execute(_each(PUBLIC_BY_DEFAULT, "GRANT EXECUTE ON FUNCTION %s TO PUBLIC"))
