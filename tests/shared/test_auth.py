"""Tokens: hashed at rest, revocable at once, five roles, no anonymous /v1 path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from shared.auth import Actor, hash_token, revoke_token
from shared.db import Database, asyncpg_dsn
from shared.token_cache import REVOCATIONS, RevocableCache
from tests.support import BackingServices, bearer, complaint, eventually, query, running_app

OPEN_PATHS = {"/healthz", "/readyz", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc",
              "/asyncapi.json", "/metrics"}
# Public by design: the complainant's status (an access code) and Open311 (its own api_key).
PUBLIC_PREFIXES = ("/public/", "/status", "/open311/")


async def test_only_a_hash_of_each_token_is_stored(services: BackingServices) -> None:
    token = await services.token("partner", "posko")
    dump = await query(services.database_url, "SELECT * FROM auth.tokens")
    assert len(dump) == 1
    assert token not in repr([dict(r) for r in dump])
    assert len(dump[0]["token_hash"]) == 64


async def test_revocation_takes_effect_at_once(services: BackingServices) -> None:
    token = await services.token("partner", "posko")
    async with running_app(services) as client:
        assert (await client.get("/v1/complaints", headers=bearer(token))).status_code == 200
        async with Database.opened(services.database_url) as database, \
                database.transaction() as session:
            assert await revoke_token(session, "posko")
        response = await client.get("/v1/complaints", headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


async def test_every_v1_path_needs_a_token(services: BackingServices) -> None:
    async with running_app(services) as client:
        spec = (await client.get("/openapi.json")).json()
        checked = 0
        for path, operations in spec["paths"].items():
            concrete = (path.replace("{complaint_id}", "00000000-0000-0000-0000-000000000000")
                        .replace("{case_id}", "00000000-0000-0000-0000-000000000000")
                        .replace("{code}", "pln").replace("{period}", "2022-Q1"))
            for method in operations:
                response = await client.request(method.upper(), concrete, json={})
                if path in OPEN_PATHS or path.startswith(PUBLIC_PREFIXES):
                    continue
                assert path.startswith("/v1/") or path == "/dashboard", path
                assert response.status_code == 401, (method, path, response.status_code)
                assert "Basic realm" in response.headers["www-authenticate"], path
                checked += 1
        assert checked >= 10


async def test_analysts_cannot_write(services: BackingServices) -> None:
    analyst = await services.token("analyst")
    async with running_app(services) as client:
        writes = [
            client.post("/v1/complaints", json=complaint(), headers=bearer(analyst)),
            client.post("/v1/cases/00000000-0000-0000-0000-000000000000/transitions",
                        json={"action": "register"}, headers=bearer(analyst)),
            client.put("/v1/metrics/targets/2022", json={"closures": 1},
                       headers=bearer(analyst)),
        ]
        for write in writes:
            assert (await write).status_code == 403


async def test_rate_limit_per_token(services: BackingServices) -> None:
    limited = await services.token("partner", "cepat")
    other = await services.token("partner", "lambat")
    async with running_app(services, rate_limit_per_minute=5) as client:
        codes = [(await client.get("/v1/complaints", headers=bearer(limited))).status_code
                 for _ in range(7)]
        assert codes[:5] == [200] * 5
        assert codes[5:] == [429, 429]
        refused = await client.get("/v1/complaints", headers=bearer(limited))
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert (await client.get("/v1/complaints", headers=bearer(other))).status_code == 200


async def test_tokens_and_personal_data_stay_out_of_logs(
    services: BackingServices, caplog: object,
) -> None:
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    token = await services.token("partner")
    caplog.set_level(logging.DEBUG)
    async with running_app(services) as client:
        body = complaint(reporter={"name": "Rahasia Sekali", "identity_number": "1971777",
                                   "email": "rahasia@example.id", "confidential": True})
        created = await client.post("/v1/complaints", json=body, headers=bearer(token))
        assert created.status_code == 201
        await client.get("/v1/complaints", headers=bearer("adu_wrong"))
    text = caplog.text
    for secret in (token, "Rahasia Sekali", "1971777", "rahasia@example.id"):
        assert secret not in text


async def test_database_errors_do_not_carry_statement_parameters(
    services: BackingServices,
) -> None:
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    await services.token("partner", "Rahasia 1971777")
    async with Database.opened(services.database_url) as database:
        with pytest.raises(DBAPIError) as caught:
            async with database.transaction() as session:
                await session.execute(text(
                    "INSERT INTO auth.tokens (name, role, token_hash) VALUES (:name, 'x', 'y')"),
                    {"name": "Rahasia 1971777"})
    assert "duplicate key" in str(caught.value)
    assert "1971777" not in str(caught.value)


async def test_a_revoked_tokens_name_is_not_reused(services: BackingServices) -> None:
    import pytest

    from shared.auth import Role, create_token

    old = await services.token("partner", "posko-lama")
    async with running_app(services) as client:
        created = await client.post("/v1/complaints", json=complaint(), headers=bearer(old))
        assert created.status_code == 201
        async with Database.opened(services.database_url) as database:
            async with database.transaction() as session:
                assert await revoke_token(session, "posko-lama")
            with pytest.raises(ValueError, match="revoked"):
                async with database.transaction() as session:
                    await create_token(session, name="posko-lama", role=Role.partner)
        successor = await services.token("partner", "posko-baru")
        mine = await client.get("/v1/complaints", headers=bearer(successor))
        assert mine.json()["items"] == []
        hidden = await client.get(f"/v1/complaints/{created.json()['id']}",
                                  headers=bearer(successor))
        assert hidden.status_code == 404
        assert (await client.get("/v1/complaints", headers=bearer(old))).status_code == 401


async def test_token_names_and_agency_codes_are_checked(services: BackingServices) -> None:
    import pytest

    from shared.auth import Role, create_token

    async with Database.opened(services.database_url) as database:
        for name, role, agency, message in [
            ("n" * 101, Role.partner, None, "at most 100"),
            ("\u200b", Role.partner, None, "blank"),
            ("a\x00b", Role.partner, None, "printable"),
            ("narahubung", Role.liaison, "PLN-UIW-BABEL", "not an agency code"),
            ("narahubung", Role.liaison, "pln uiw", "not an agency code"),
            ("narahubung", Role.liaison, "x" * 65, "not an agency code"),
            ("narahubung", Role.liaison, "unassigned", "names no agency"),
        ]:
            with pytest.raises(ValueError, match=message):
                async with database.transaction() as session:
                    await create_token(session, name=name, role=role, agency_code=agency)


async def test_each_way_of_presenting_a_token_is_answered_as_documented(
    services: BackingServices,
) -> None:
    import base64

    token = await services.token("partner", "posko")

    def basic(raw: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}

    both = 'Basic realm="aduan", charset="UTF-8", Bearer realm="aduan"'
    async with running_app(services) as client:
        for headers in (bearer(token), basic(f"any:{token}"), basic(f":{token}"),
                        {"Authorization": f"bearer   {token}"}):
            answer = await client.get("/v1/complaints", headers=headers)
            assert answer.status_code == 200, headers
        for headers, challenge, says in [
            ({}, both, "A token is required"),
            ({"Authorization": f"Token {token}"}, both, "A token is required"),
            ({"Authorization": "Bearer"}, both, "A token is required"),
            ({"Authorization": "Basic !!!"}, both, "base64 of user:token"),
            (basic(f"{token}"), both, "base64 of user:token"),
            (basic("any:"), both, "base64 of user:token"),
            (bearer("adu_unknown"), both + ', error="invalid_token"', "unknown or revoked"),
            (basic("any:adu_unknown"), both + ', error="invalid_token"', "unknown or revoked"),
        ]:
            answer = await client.get("/v1/complaints", headers=headers)
            assert answer.status_code == 401, headers
            assert answer.headers["www-authenticate"] == challenge, headers
            assert answer.headers["content-type"] == "application/problem+json"
            assert says in answer.json()["detail"], headers


async def test_a_refused_role_still_spends_the_tokens_rate(services: BackingServices) -> None:
    analyst = await services.token("analyst", "analis")
    async with running_app(services, rate_limit_per_minute=2) as client:
        codes = [(await client.post("/v1/complaints", json=complaint(),
                                    headers=bearer(analyst))).status_code for _ in range(3)]
        assert codes == [403, 403, 429]
        summary = await client.get("/v1/metrics/summary", params={"period": "2022-Q1"},
                                   headers=bearer(analyst))
        assert summary.status_code == 429
        assert int(summary.headers["retry-after"]) >= 1


async def test_revocation_by_another_process_takes_effect_while_callers_are_kept(
    services: BackingServices,
) -> None:
    """The app keeps the callers of tokens it saw; a revocation committed elsewhere (the
    command line's, here as its SQL on a connection of its own) is heard and refused."""
    token = await services.token("partner", "posko")
    async with running_app(services) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        await eventually(_hearing(runtime.tokens), timeout=10)
        for _ in range(2):
            assert (await client.get("/v1/complaints", headers=bearer(token))).status_code == 200
        assert runtime.tokens.get(hash_token(token)) is not None  # kept: no look-up
        connection = await asyncpg.connect(asyncpg_dsn(services.database_url))
        try:
            async with connection.transaction():
                await connection.execute(
                    "UPDATE auth.tokens SET revoked_at = now() WHERE name = 'posko'")
                await connection.execute("SELECT pg_notify($1, 'posko')", REVOCATIONS)
        finally:
            await connection.close()

        async def refused() -> None:
            response = await client.get("/v1/complaints", headers=bearer(token))
            assert response.status_code == 401

        await eventually(refused, timeout=2, interval=0.01)
        assert runtime.tokens.get(hash_token(token)) is None


def _hearing(cache: RevocableCache[Actor]) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        assert cache.hearing

    return check


async def test_basic_credentials_that_are_not_ascii_are_401_everywhere(
        services: BackingServices) -> None:
    """``curl -H $'Authorization: Basic \\xc3\\xa9'``: the header's raw bytes, not base64."""
    async with running_app(services) as client:
        for raw in (b"Basic \xc3\xa9", b"Basic \xff\xfe", b"basic YW55Onh4\xc3\xa9"):
            for path in ("/v1/complaints", "/v1/metrics/summary", "/v1/metrics/monthly",
                         "/v1/webhooks", "/dashboard"):
                answer = await client.get(path, headers=[(b"authorization", raw)])
                assert answer.status_code == 401, (raw, path, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                assert "base64 of user:token" in answer.json()["detail"]
