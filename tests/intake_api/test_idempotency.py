"""Stored ``Idempotency-Key`` responses: replayed within their retention, purged after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from intake_api.idempotency import RETENTION, purge_expired
from intake_api.models import IdempotencyKey
from shared.clock import ShiftedClock
from shared.db import Database
from tests.support import BackingServices, bearer, complaint, eventually, running_app


async def stored_keys(database: Database) -> int:
    async with database.transaction() as session:
        return int((await session.execute(
            select(func.count()).select_from(IdempotencyKey))).scalar_one())


async def test_stored_responses_are_purged_after_their_retention(
        services: BackingServices) -> None:
    token = await services.token("partner")
    headers = {**bearer(token), "Idempotency-Key": "kirim-kemarin"}
    database = Database.connect(services.database_url, pool_size=1)
    try:
        async with running_app(services) as client:
            first = await client.post("/v1/complaints", json=complaint(), headers=headers)
            assert first.status_code == 201
            # Kept at least 24 hours (API.md): an hour before that, nothing is purged.
            almost = datetime.now(UTC) + RETENTION - timedelta(hours=1)
            assert await purge_expired(database, almost) == 0
            replay = await client.post("/v1/complaints", json=complaint(), headers=headers)
            assert replay.headers["idempotent-replayed"] == "true"
            assert await stored_keys(database) == 1

        # A day later the intake service purges it by itself (at start, then every hour).
        later = ShiftedClock(RETENTION + timedelta(minutes=5))
        async with running_app(services, clock=later) as client:
            async def purged() -> None:
                assert await stored_keys(database) == 0

            await eventually(purged)
            again = await client.post("/v1/complaints", json=complaint(), headers=headers)
            assert again.status_code == 201
            assert "idempotent-replayed" not in again.headers
            assert again.json()["id"] != first.json()["id"]
    finally:
        await database.dispose()
