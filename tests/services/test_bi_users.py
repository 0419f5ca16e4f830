"""``aduan bi-user``: a BI tool's login over TCP reads the views, equal to the API, and no more."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from intake_api.webhooks.repository import WAKEUP as WEBHOOK_DELIVERIES
from services import bi_users
from shared.token_cache import REVOCATIONS
from shared.wakeup import channel
from tests.services.test_cli import aduan
from tests.support import BackingServices, bearer, complaint, running_app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "bi.md"
Q1 = (date(2022, 1, 1), date(2022, 3, 31))


def documented_views() -> dict[str, list[str]]:
    """The column reference of docs/bi.md: view name to its columns, in order."""
    views: dict[str, list[str]] = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"^\| `(metrics\.bi_\w+)` \|.*\| `([^`]+)` \|$", line)
        if match:
            views[match.group(1)] = [c.strip() for c in match.group(2).split(",")]
    return views


async def create_login(services: BackingServices, name: str) -> str:
    created = await asyncio.to_thread(aduan, "bi-user", "create", name, env=services.env())
    assert created.returncode == 0, created.stderr
    uri = created.stdout.strip().splitlines()[-1]
    assert re.match(rf"^postgresql://{name}:[^@/]+@127\.0\.0\.1:\d+/\w+$", uri), uri
    return uri


async def figures_from_views(reader: asyncpg.Connection) -> dict[str, Any]:
    """The quarter's figures the way a BI tool would compute them from the views."""
    first, last = Q1
    period = "received_local_date BETWEEN $1::date AND $2::date"
    closed = "closed_local_date BETWEEN $1::date AND $2::date"

    async def grouped(sql: str, *args: date) -> dict[str, int]:
        rows = await reader.fetch(sql, *(args or (first, last)))
        return {str(k): int(v) for k, v in rows if v}

    received = f"FROM metrics.bi_contacts WHERE is_received_report AND {period}"
    start = "($1::date::timestamp AT TIME ZONE 'Asia/Jakarta')"
    end = "(($2::date + 1)::timestamp AT TIME ZONE 'Asia/Jakarta')"
    return {
        "received": await reader.fetchval(f"SELECT count(*) {received}", first, last),
        "received_by_month": await grouped(f"SELECT received_month, count(*) {received} "
                                           "GROUP BY 1"),
        "received_by_channel": await grouped(f"SELECT channel, count(*) {received} GROUP BY 1"),
        "received_by_substance": await grouped(f"SELECT substance, count(*) {received} "
                                               "GROUP BY 1"),
        "received_by_agency": await grouped(f"SELECT agency_code, count(*) {received} "
                                            "GROUP BY 1"),
        "contacts_by_kind": await grouped(
            f"SELECT kind, count(*) FROM metrics.bi_contacts WHERE {period} GROUP BY 1"),
        "on_the_spot_locations": await reader.fetchval(
            "SELECT count(DISTINCT on_the_spot_place) FROM metrics.bi_contacts "
            f"WHERE channel = 'on_the_spot' AND {period}", first, last),
        "registered": await reader.fetchval(
            "SELECT count(DISTINCT case_id) FROM metrics.bi_transitions WHERE action = "
            "'register' AND effective_local_date BETWEEN $1::date AND $2::date", first, last),
        "closed": await reader.fetchval(f"SELECT count(*) FROM metrics.bi_cases WHERE {closed}",
                                        first, last),
        "closed_by_stage": await grouped(
            f"SELECT closure_stage, count(*) FROM metrics.bi_cases WHERE {closed} GROUP BY 1"),
        "closed_by_reason": await grouped(
            f"SELECT closure_reason, count(*) FROM metrics.bi_cases WHERE {closed} GROUP BY 1"),
        "carried_over_by_year": await grouped(
            "SELECT received_year, count(*) FROM metrics.bi_cases WHERE received_local_date "
            f"< $1::date AND (closed_at IS NULL OR closed_at >= {start}) GROUP BY 1", first),
        "examination_by_year": await grouped(
            f"SELECT received_year, count(*) FROM metrics.bi_cases WHERE examination_started_at"
            f" < {end} AND (closed_at IS NULL OR closed_at >= {start}) GROUP BY 1"),
        "median_days_to_close": {
            stage: round(float(days), 2) for stage, days in await reader.fetch(
                "SELECT closure_stage, percentile_cont(0.5) WITHIN GROUP (ORDER BY "
                f"days_to_close) FROM metrics.bi_cases WHERE {closed} GROUP BY 1", first, last)},
        "liaison_requests": await grouped(
            "SELECT agency_code, count(*) FROM metrics.bi_transitions WHERE action = "
            "'request_clarification' AND effective_local_date BETWEEN $1::date AND $2::date "
            "GROUP BY 1"),
        "closures_target": await reader.fetchval(
            "SELECT closures_target FROM metrics.bi_targets WHERE period = '2022-Q1'"),
    }


@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("published")
async def test_a_bi_login_reads_every_view_over_tcp_and_nothing_else(
        published: BackingServices) -> None:
    name = f"bi_{uuid.uuid4().hex[:8]}"
    uri = await create_login(published, name)
    reader = await asyncpg.connect(uri)
    try:
        assert await reader.fetchval("SELECT inet_server_addr() IS NOT NULL")  # TCP, not socket
        assert await reader.fetchval("SELECT current_user") == name
        documented = documented_views()
        assert set(documented) == {"metrics.bi_contacts", "metrics.bi_cases",
                                   "metrics.bi_transitions", "metrics.bi_targets"}
        for view, columns in documented.items():
            rows = await reader.fetch(f"SELECT * FROM {view}")
            assert rows, view
            assert list(rows[0].keys()) == columns, view
            assert all(len(list(row.values())) == len(columns) for row in rows)

        from_views = await figures_from_views(reader)
        admin = await published.token("admin", name=f"reader-{name}")
        async with running_app(published) as client:
            response = await client.get("/v1/metrics/summary", params={"period": "2022-Q1"},
                                        headers=bearer(admin))
        assert response.status_code == 200, response.text
        summary = response.json()
        assert from_views["received"] == summary["received"] == 480
        for figure in ("received_by_month", "received_by_channel", "received_by_substance",
                       "received_by_agency", "on_the_spot_locations", "registered", "closed",
                       "closed_by_stage", "closed_by_reason", "carried_over_by_year",
                       "median_days_to_close"):
            assert from_views[figure] == summary[figure], figure
        assert from_views["contacts_by_kind"] == {k: v for k, v in
                                                  summary["contacts_by_kind"].items() if v}
        assert from_views["examination_by_year"] == \
            summary["examination"]["handled_by_received_year"] == {"2022": 82, "2021": 11}
        assert from_views["liaison_requests"] == {a: f["requests"] for a, f in
                                                  summary["liaison"].items()}
        assert from_views["closures_target"] == summary["targets"]["closures"]["target"] == 260

        for table in ("metrics.cases", "metrics.contacts", "metrics.transitions",
                      "metrics.office", "intake.complaints", "auth.tokens", "cases.cases",
                      "public.alembic_version"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.fetch(f"SELECT * FROM {table}")
        for statement in ("DELETE FROM metrics.bi_targets",
                          "CREATE TABLE metrics.mine (x int)", "CREATE TABLE public.mine (x int)",
                          "CREATE SCHEMA mine"):
            with pytest.raises((asyncpg.InsufficientPrivilegeError,
                                asyncpg.ReadOnlySQLTransactionError)):
                await reader.execute(f"BEGIN READ WRITE; {statement}")
            await reader.execute("ROLLBACK")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("BEGIN READ WRITE; INSERT INTO metrics.bi_targets "
                                 "(period) VALUES ('2030')")
        await reader.execute("ROLLBACK")

        revoked = await asyncio.to_thread(aduan, "bi-user", "revoke", name, env=published.env())
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises((asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError,
                            asyncpg.InterfaceError)):
            await reader.fetchval("SELECT 1")  # its open session was ended
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            await asyncpg.connect(uri)
    finally:
        if not reader.is_closed():
            await reader.close()
        await asyncio.to_thread(aduan, "bi-user", "revoke", name, env=published.env())


async def owner_and_new_login(services: BackingServices) -> tuple[
        str, bi_users.Login, asyncpg.Connection, asyncpg.Connection]:
    """A new BI login's name and what ``create`` said, aduan's own connection, and the
    login's own, over TCP."""
    name = f"bi_{uuid.uuid4().hex[:8]}"
    login = await bi_users.create(services.database_url, name)
    owner = await asyncpg.connect(make_url(services.database_url).set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    return name, login, owner, await asyncpg.connect(login.uri)


async def test_a_bi_login_makes_no_temporary_table_and_reaches_no_other_database(
        services: BackingServices) -> None:
    name, login, owner, reader = await owner_and_new_login(services)
    try:
        assert await reader.fetchval("SELECT inet_server_addr() IS NOT NULL")  # over TCP
        assert await reader.fetchval("SHOW default_transaction_read_only") == "on"
        if await owner.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            assert await reader.fetchval("SHOW temp_file_limit") == "1GB"
        assert await reader.fetchval("SELECT count(*) FROM metrics.bi_contacts") == 0
        # Neither a read-write transaction nor a session switched to read-write may write a
        # temporary table.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("BEGIN READ WRITE; CREATE TEMP TABLE t (a int)")
        await reader.execute("ROLLBACK")
        await reader.execute("SET default_transaction_read_only = off")
        for statement in ("CREATE TEMP TABLE t (a int)",
                          "CREATE TEMP VIEW v AS SELECT 1 AS a",
                          "CREATE TEMP SEQUENCE s"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(statement)
        # aduan's own role keeps what it had, and the app works beside the login.
        await owner.execute("CREATE TEMP TABLE mine (a int); INSERT INTO mine VALUES (1)")
        partner = await services.token("partner")
        async with running_app(services) as client:
            posted = await client.post("/v1/complaints", json=complaint(),
                                       headers=bearer(partner))
            assert posted.status_code == 201, posted.text
    finally:
        await reader.close()
        await owner.close()
    try:
        # The embedded server admits TCP logins to aduan's databases only (docs/bi.md says what
        # to do with a server of one's own).
        if not os.environ.get("ADUAN_TEST_DATABASE_URL"):
            for other in ("postgres", "template1"):
                elsewhere = make_url(login.uri).set(database=other)
                with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError,
                                   match=r"pg_hba\.conf rejects"):
                    await asyncpg.connect(elsewhere.render_as_string(hide_password=False))
    finally:
        assert await bi_users.revoke(services.database_url, name)


async def test_bi_user_refuses_other_roles_and_bad_names(services: BackingServices) -> None:
    url = services.database_url
    for name in ("postgres", "aduan_bi", "Robert'); DROP TABLE x;--", "pg_monitor", "x"):
        with pytest.raises(bi_users.BiUserError):
            await bi_users.create(url, name)
    other = f"app_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(make_url(url).set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    try:
        await owner.execute(f"CREATE ROLE {other} LOGIN")
        with pytest.raises(bi_users.BiUserError, match="not a BI login"):
            await bi_users.revoke(url, other)
        assert await owner.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", other)
    finally:
        await owner.execute(f"DROP ROLE IF EXISTS {other}")
        await owner.close()
    assert await bi_users.revoke(url, "nobody_here") is False
    name = f"bi_{uuid.uuid4().hex[:8]}"
    try:
        await bi_users.create(url, name)
        with pytest.raises(bi_users.BiUserError, match="exists"):
            await bi_users.create(url, name)
    finally:
        assert await bi_users.revoke(url, name) is True
    refused = await asyncio.to_thread(aduan, "bi-user", "create", "postgres", env=services.env())
    assert refused.returncode == 2
    assert "not a usable login name" in refused.stderr


def test_scram_verifier_matches_the_rfc_7677_example() -> None:
    """RFC 7677's test vector: user "user", password "pencil", 4096 iterations."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = bi_users.scram_verifier("pencil", salt=salt)
    assert verifier == ("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
                        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")


async def test_temporary_left_to_public_is_reported_when_aduan_does_not_own_its_database(
        services: BackingServices) -> None:
    """As a role that neither owns the database nor is a superuser, REVOKE changes nothing and
    raises nothing (PostgreSQL only warns, and no driver says so): the operator is told
    instead. As the owner it takes effect."""
    owner = await asyncpg.connect(make_url(services.database_url).set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    database = await owner.fetchval("SELECT quote_ident(current_database())")
    try:
        await owner.execute(f'CREATE ROLE "{tenant}" NOLOGIN')
        # Holding some privilege on the database is what makes PostgreSQL warn, not fail.
        await owner.execute(f'GRANT CONNECT ON DATABASE {database} TO "{tenant}"')
        await owner.execute(f"GRANT TEMPORARY ON DATABASE {database} TO PUBLIC")
        await owner.execute(f'SET ROLE "{tenant}"')
        warning = await bi_users.refuse_temporary(owner)
        assert warning is not None
        assert f"{tenant} neither owns it nor is a superuser" in warning
        assert f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC" in warning
        assert await owner.fetchval(bi_users.PUBLIC_MAY_MAKE_TEMPORARY)
        await owner.execute("RESET ROLE")
        assert await bi_users.refuse_temporary(owner) is None
        assert not await owner.fetchval(bi_users.PUBLIC_MAY_MAKE_TEMPORARY)
    finally:
        await owner.execute("RESET ROLE")
        await owner.execute(f'REVOKE ALL ON DATABASE {database} FROM "{tenant}"')
        await owner.execute(f'DROP ROLE IF EXISTS "{tenant}"')
        await owner.close()


async def test_bi_user_create_tells_the_operator_when_public_keeps_temporary(
        services: BackingServices) -> None:
    """Made by a user that may create roles but does not own the database, the login comes
    with the warning ``aduan bi-user create`` prints."""
    url = make_url(services.database_url)
    owner = await asyncpg.connect(url.set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    operator, password = f"op_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    database = await owner.fetchval("SELECT quote_ident(current_database())")
    name = f"bi_{uuid.uuid4().hex[:8]}"
    try:
        await owner.execute(f"CREATE ROLE \"{operator}\" LOGIN CREATEROLE PASSWORD '{password}'")
        await owner.execute(f'GRANT {bi_users.BI_ROLE} TO "{operator}" WITH ADMIN OPTION')
        await owner.execute(f'GRANT CONNECT ON DATABASE {database} TO "{operator}"')
        await owner.execute(f"GRANT TEMPORARY ON DATABASE {database} TO PUBLIC")
        as_operator = url.set(username=operator, password=password)
        login = await bi_users.create(as_operator.render_as_string(hide_password=False), name)
        assert len(login.warnings) == 1
        assert "PUBLIC may still create temporary tables" in login.warnings[0]
        assert await owner.fetchval(bi_users.PUBLIC_MAY_MAKE_TEMPORARY)
    finally:
        await owner.execute(f'DROP ROLE IF EXISTS "{name}"')
        await owner.execute(f'REVOKE ALL ON DATABASE {database} FROM "{operator}"')
        await owner.execute(f'DROP ROLE IF EXISTS "{operator}"')
        await owner.execute(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
        await owner.close()


async def test_a_bi_login_writes_no_large_object(services: BackingServices) -> None:
    """Large objects are written by functions PUBLIC may run by default, into pg_largeobject,
    whatever the session's read-only default: the migrations take them from PUBLIC."""
    name, login, owner, reader = await owner_and_new_login(services)
    try:
        assert await reader.fetchval("SELECT inet_server_addr() IS NOT NULL")  # over TCP
        if await owner.fetchval(bi_users.MAY_CHANGE_FUNCTION_ACL):
            assert login.warnings == ()
            assert await owner.fetchval(bi_users.PUBLIC_MAY_WRITE_LARGE_OBJECTS) == ""
        for call in ("lo_from_bytea(0, convert_to(repeat('A', 1000000), 'UTF8'))",
                     "lo_create(0)", "lo_creat(-1)", "lo_put(4242, 0, '\\x41'::bytea)",
                     "lo_unlink(4242)", "lowrite(0, '\\x41'::bytea)", "lo_truncate(0, 0)"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError,
                               match="permission denied for function"):
                await reader.execute(f"BEGIN READ WRITE; SELECT {call}; COMMIT")
            await reader.execute("ROLLBACK")
        assert await owner.fetchval("SELECT count(*) FROM pg_largeobject_metadata") == 0
        for view in documented_views():
            assert await reader.fetchval(f"SELECT count(*) FROM {view}") >= 0
    finally:
        await reader.close()
        await owner.close()
        assert await bi_users.revoke(services.database_url, name)


async def test_large_object_writers_left_to_public_are_reported_to_a_non_superuser(
        services: BackingServices) -> None:
    """Only a superuser may take the functions from PUBLIC; anyone else is told the statement
    to have one run."""
    owner = await asyncpg.connect(make_url(services.database_url).set(drivername="postgresql")
                                  .render_as_string(hide_password=False))
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    try:
        await owner.execute(f'CREATE ROLE "{tenant}" NOLOGIN')
        await owner.execute("GRANT EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) TO PUBLIC")
        await owner.execute(f'SET ROLE "{tenant}"')
        warning = await bi_users.refuse_large_objects(owner)
        assert warning is not None
        assert f"{tenant} is not a superuser" in warning
        assert "REVOKE EXECUTE ON FUNCTION lo_from_bytea(oid,bytea) FROM PUBLIC" in warning
        await owner.execute("RESET ROLE")
        assert await bi_users.refuse_large_objects(owner) is None
        assert await owner.fetchval(bi_users.PUBLIC_MAY_WRITE_LARGE_OBJECTS) == ""
    finally:
        await owner.execute("RESET ROLE")
        await owner.execute("REVOKE EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) FROM PUBLIC")
        await owner.execute(f'DROP ROLE IF EXISTS "{tenant}"')
        await owner.close()


HOSTILE_PAYLOADS = ["partner", "admin", '{"event_id": 1}', "';DROP TABLE x;--"]


async def test_a_bi_logins_notifications_wake_the_app_once_and_tell_it_nothing(
        services: BackingServices) -> None:
    """NOTIFY needs no privilege, so a BI login may notify aduan's own channels. The app's
    readers take a notification as "look once more": however many arrive, one look, and the
    payload is never read (docs/bi.md)."""
    name, _, owner, flooder = await owner_and_new_login(services)
    transactions = ("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                    "WHERE datname = current_database()")
    channels = [channel("intake"), channel("cases"), channel(WEBHOOK_DELIVERIES), REVOCATIONS]
    partner = await services.token("partner")
    try:
        async with running_app(services) as client:
            posted = await client.post("/v1/complaints", json=complaint(),
                                       headers=bearer(partner))
            assert posted.status_code == 201, posted.text
            await asyncio.sleep(1.5)
            before = await owner.fetchval(transactions)
            await asyncio.sleep(3)
            idle = await owner.fetchval(transactions) - before
            before = await owner.fetchval(transactions)
            for notified in channels:
                # 25,000 each, with payloads naming tokens, events and SQL.
                await flooder.execute(
                    "SELECT count(pg_notify($1, ($2::text[])[g % 4 + 1] || g)) "
                    "FROM generate_series(1, 25000) g", notified, HOSTILE_PAYLOADS)
            await asyncio.sleep(3)
            flooded = await owner.fetchval(transactions) - before
            # 100,000 notifications: a look for each would be 100,000 transactions.
            assert flooded < idle + 200, (flooded, idle)
            posted = await client.post("/v1/complaints", json=complaint(),
                                       headers=bearer(partner))
            assert posted.status_code == 201, posted.text
    finally:
        await flooder.close()
        await owner.close()
        assert await bi_users.revoke(services.database_url, name)
