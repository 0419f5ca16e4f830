"""How validation failures read to a client: status and words, for every JSON body."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.bus.applier import is_outage
from shared.db import Database
from shared.problems import database_problem, is_connection_loss, is_transient_conflict
from tests.support import BackingServices, bearer, complaint, running_app

JSON = {"content-type": "application/json"}


async def test_an_empty_json_body_is_malformed_json_everywhere(services: BackingServices) -> None:
    """API.md: 400 for malformed JSON. An empty body is no JSON document, as ``/public/status``
    has always said; a missing body with no content type is the same."""
    admin = await services.token("admin")
    somewhere = uuid.uuid4()
    async with running_app(services) as client:
        for method, path in [("POST", "/v1/complaints"), ("POST", "/v1/webhooks"),
                             ("POST", f"/v1/cases/{somewhere}/transitions"),
                             ("PUT", "/v1/metrics/targets/2026"), ("POST", "/public/status")]:
            for headers in (JSON, {}):
                answer = await client.request(method, path, content=b"",
                                              headers={**headers, **bearer(admin)})
                assert answer.status_code == 400, (method, path, headers, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.json()["status"] == 400


async def test_too_long_text_is_measured_in_characters(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        body = complaint()
        body["reporter"]["name"] = "S" * 201
        answer = await client.post("/v1/complaints", json=body, headers=bearer(partner))
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [
            {"field": "/reporter/name", "message": "must have at most 200 characters, not 201"}]


async def _a_real_deadlock(database_url: str) -> DBAPIError:
    """Two transactions taking two locks in opposite orders: PostgreSQL picks one to fail."""
    async with Database.opened(database_url, pool_size=2) as database, \
            database.sessionmaker() as first, database.sessionmaker() as second:
        await first.execute(text("SELECT pg_advisory_xact_lock(1)"))
        await second.execute(text("SELECT pg_advisory_xact_lock(2)"))
        crossing = asyncio.create_task(first.execute(text("SELECT pg_advisory_xact_lock(2)")))
        await asyncio.sleep(0.1)
        outcomes = await asyncio.gather(
            second.execute(text("SELECT pg_advisory_xact_lock(1)")), crossing,
            return_exceptions=True)
        await first.rollback()
        await second.rollback()
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 1, outcomes
    assert isinstance(failures[0], DBAPIError), failures
    return failures[0]


async def test_a_deadlock_is_a_transient_conflict_answered_503(database_url: str) -> None:
    """SQLAlchemy's asyncpg adapter reports a deadlock as a plain DBAPIError; it is no
    internal error but a race a retry wins (API.md: never a 500 for any input)."""
    deadlock = await _a_real_deadlock(database_url)
    assert getattr(deadlock.orig, "sqlstate", None) == "40P01"
    assert is_transient_conflict(deadlock)
    assert not is_connection_loss(deadlock)
    problem = database_problem(deadlock)
    assert (problem.status, problem.headers) == (503, {"Retry-After": "1"})
    assert problem.body()["type"].endswith("/unavailable")
    assert is_outage(deadlock) is False  # retried by the applier without counting instead
