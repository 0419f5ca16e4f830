"""SQL logins for BI tools (``aduan bi-user create|revoke NAME``).

Each login is a member of ``aduan_bi`` (made by the migrations), which may read the
``metrics.bi_*`` views and nothing else. The password is random and shown once; the server is
given only its SCRAM-SHA-256 verifier, so the password appears in no statement or server log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import make_url

from metrics_worker.bi_watchdog import BI_ROLE as BI_ROLE
from shared.settings import BI_QUERY_LIMIT_SECONDS

logger = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
RESERVED = {"postgres", BI_ROLE, "public"}
SCRAM_ITERATIONS = 4096
# Settings a BI login starts its sessions with: it reads, and a runaway query or a transaction
# left open ends. A session may SET them otherwise, so the metrics service also ends its queries
# and transactions that outlast the limit (``metrics_worker.bi_watchdog``).
def session_settings(limit_seconds: float = BI_QUERY_LIMIT_SECONDS) -> dict[str, str]:
    limit = f"{max(1, round(limit_seconds * 1000))}ms"
    return {"default_transaction_read_only": "on", "statement_timeout": limit,
            "idle_in_transaction_session_timeout": limit}


# And the disk its sorts and hashes may spill to. Only a superuser may set it for a role: the
# embedded server's owner is one; with another PostgreSQL it is set when the user may.
SUPERUSER_SETTINGS = {"temp_file_limit": "1GB"}
# Every role may make temporary tables in a new database (PUBLIC holds TEMPORARY): a place a
# read-only login could write to. Taken from PUBLIC on aduan's database and kept by the role
# aduan runs as (the owner keeps it anyway). A database made from a template does not inherit
# its ACL, hence here as well as in the migrations. Only the owner (or a superuser) can: anyone
# else's REVOKE succeeds and changes nothing, with a WARNING no driver reports, so both
# conditions are checked rather than trusted to raise.
MAY_CHANGE_DATABASE_ACL = """
    SELECT pg_has_role(current_user, d.datdba, 'MEMBER')
           OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user)
    FROM pg_database d WHERE d.datname = current_database()"""
PUBLIC_MAY_MAKE_TEMPORARY = """
    SELECT EXISTS (
      SELECT FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
      WHERE d.datname = current_database() AND a.grantee = 0
        AND a.privilege_type = 'TEMPORARY')"""
REFUSE_TEMPORARY = """
    DO $$
    BEGIN
      EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER', current_database());
      EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    END $$"""


async def _take_from_public(connection: asyncpg.Connection, *, may_change: str, take: str,
                            still_public: str) -> tuple[str, str, Any] | None:
    """Runs ``take`` when ``may_change`` says this login may, then asks ``still_public`` (the
    ACL, since a REVOKE by anyone else changes nothing but warns): None when PUBLIC holds
    nothing more, else this database, this login and what PUBLIC still holds."""
    if await connection.fetchval(may_change):
        await connection.execute(take)
    left = await connection.fetchval(still_public)
    if not left:
        return None
    database = await connection.fetchval("SELECT current_database()")
    user = await connection.fetchval("SELECT current_user")
    return database, user, left


async def refuse_temporary(connection: asyncpg.Connection) -> str | None:
    """Takes TEMPORARY on this database from PUBLIC; what the operator must do when it is
    still there (None when it is not)."""
    still = await _take_from_public(connection, may_change=MAY_CHANGE_DATABASE_ACL,
                                    take=REFUSE_TEMPORARY,
                                    still_public=PUBLIC_MAY_MAKE_TEMPORARY)
    if still is None:
        return None
    database, user, _ = still
    return (f"PUBLIC may still create temporary tables in database {database}, so BI logins "
            f"can write there: {user} neither owns it nor is a superuser. As its owner, run "
            f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC; (docs/bi.md)")


# Large objects are written through functions PostgreSQL lets PUBLIC execute (lo_from_bytea,
# lo_create, lowrite, ...), into pg_largeobject, whatever the session's read-only default
# (BEGIN READ WRITE). aduan stores none, so they are taken from PUBLIC on aduan's database (the
# functions are per database) and given to nobody. Only a superuser can: the functions belong
# to the bootstrap superuser, and anyone else's REVOKE changes nothing but warns, so the ACL is
# checked afterwards. lo_import and lo_export (server files) are PUBLIC's only on old servers.
LARGE_OBJECT_WRITERS = ("lo_creat", "lo_create", "lo_from_bytea", "lo_put", "lowrite",
                        "lo_truncate", "lo_truncate64", "lo_unlink", "lo_import", "lo_export")
_WRITERS = ", ".join(f"'{name}'" for name in LARGE_OBJECT_WRITERS)
MAY_CHANGE_FUNCTION_ACL = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
# The writers PUBLIC may still execute, as a comma-separated list of signatures ('' for none).
PUBLIC_MAY_WRITE_LARGE_OBJECTS = f"""
    SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '
                               ORDER BY p.oid::regprocedure::text), '')
    FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
    WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname IN ({_WRITERS})
      AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'"""
REFUSE_LARGE_OBJECTS = f"""
    DO $$
    DECLARE f regprocedure;
    BEGIN
      FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace
                 AND p.proname IN ({_WRITERS})
      LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
      END LOOP;
    END $$"""


async def refuse_large_objects(connection: asyncpg.Connection) -> str | None:
    """Takes the large-object writers from PUBLIC; what the operator must do when PUBLIC still
    holds some (None when it does not)."""
    still = await _take_from_public(connection, may_change=MAY_CHANGE_FUNCTION_ACL,
                                    take=REFUSE_LARGE_OBJECTS,
                                    still_public=PUBLIC_MAY_WRITE_LARGE_OBJECTS)
    if still is None:
        return None
    database, user, left = still
    return (f"PUBLIC may still write large objects in database {database}, so BI logins can "
            f"write there: {user} is not a superuser. As a superuser, connected to "
            f"{database}, run REVOKE EXECUTE ON FUNCTION {left} FROM PUBLIC; (docs/bi.md)")


class BiUserError(Exception):
    """A refusal to show the person at the command line as it is."""


@dataclass(frozen=True)
class Login:
    name: str
    password: str
    uri: str
    # What the operator must fix for the login to be as read-only as promised.
    warnings: tuple[str, ...] = ()


def scram_verifier(password: str, *, salt: bytes | None = None,
                   iterations: int = SCRAM_ITERATIONS) -> str:
    """The verifier PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802, RFC 7677)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _check_name(name: str) -> None:
    if not NAME.match(name) or name in RESERVED or name.startswith("pg_"):
        raise BiUserError(f"{name!r} is not a usable login name: 2 to 63 characters, "
                          "lower-case letters, digits and _, starting with a letter")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _is_bi_login(connection: asyncpg.Connection, name: str) -> bool | None:
    """True for a login in ``aduan_bi``, False for another role, None when there is none."""
    # Direct membership: pg_has_role() would say yes for every superuser.
    row = await connection.fetchrow("""
        SELECT r.rolcanlogin AND NOT r.rolsuper AND EXISTS (
                 SELECT FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                 WHERE m.member = r.oid AND g.rolname = $2) AS bi
        FROM pg_roles r WHERE r.rolname = $1""", name, BI_ROLE)
    return None if row is None else bool(row["bi"])


async def _address(connection: asyncpg.Connection, url: str) -> tuple[str, int, str]:
    """Where a BI tool reaches this database over TCP: host, port and database name."""
    parsed = make_url(url)
    database = str(await connection.fetchval("SELECT current_database()"))
    socket_host = parsed.query.get("host")
    if parsed.host and not parsed.host.startswith("/") and not socket_host:
        return parsed.host, parsed.port or 5432, database
    listen = str(await connection.fetchval("SELECT current_setting('listen_addresses')"))
    port = int(await connection.fetchval("SELECT current_setting('port')"))
    first = listen.split(",")[0].strip()
    if not first:
        raise BiUserError("the database server does not listen on TCP; set "
                          "ADUAN_DATABASE_LISTEN (embedded server) or listen_addresses")
    if first in {"*", "0.0.0.0", "::"}:
        first = socket.getfqdn()
    return first, port, database


async def create(url: str, name: str, *,
                 query_limit_seconds: float = BI_QUERY_LIMIT_SECONDS) -> Login:
    """Creates login ``name`` in ``aduan_bi`` with a random password; its statements and
    transactions end after ``query_limit_seconds``."""
    _check_name(name)
    connection = await asyncpg.connect(_dsn(url))
    try:
        if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1",
                                     BI_ROLE) is None:
            raise BiUserError(f"the role {BI_ROLE} is missing: run `aduan migrate` as a user "
                              "that may create roles")
        existing = await _is_bi_login(connection, name)
        if existing is not None:
            raise BiUserError(f"a role named {name!r} exists already"
                              + ("; `aduan bi-user revoke` it first" if existing else ""))
        host, port, database = await _address(connection, url)
        password = secrets.token_urlsafe(24)
        # Identifiers cannot be parameters; the name is checked above, the verifier is base64.
        async with connection.transaction():
            await connection.execute(
                f"CREATE ROLE \"{name}\" LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"NOREPLICATION PASSWORD '{scram_verifier(password)}' IN ROLE {BI_ROLE}")
            for setting, value in session_settings(query_limit_seconds).items():
                await connection.execute(f"ALTER ROLE \"{name}\" SET {setting} = '{value}'")
            for setting, value in SUPERUSER_SETTINGS.items():
                try:
                    async with connection.transaction():
                        await connection.execute(
                            f"ALTER ROLE \"{name}\" SET {setting} = '{value}'")
                except asyncpg.InsufficientPrivilegeError:
                    logger.warning("bi-user: %s of %s left to the server's default (only a "
                                   "superuser may set it)", setting, name)
            unrefused = [await refuse_temporary(connection),
                         await refuse_large_objects(connection)]
    finally:
        await connection.close()
    uri = (f"postgresql://{name}:{quote(password, safe='')}@{_host(host)}:{port}/"
           f"{quote(database, safe='')}")
    warnings = tuple(warning for warning in unrefused if warning)
    for warning in warnings:
        logger.warning("bi-user: %s", warning)
    return Login(name=name, password=password, uri=uri, warnings=warnings)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def revoke(url: str, name: str) -> bool:
    """Drops login ``name`` (only a member of ``aduan_bi``) and ends its open sessions."""
    _check_name(name)
    connection = await asyncpg.connect(_dsn(url))
    try:
        existing = await _is_bi_login(connection, name)
        if existing is None:
            return False
        if not existing:
            raise BiUserError(f"{name!r} is not a BI login; it is left alone")
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
        await connection.execute(f'DROP ROLE "{name}"')
        return True
    finally:
        await connection.close()
