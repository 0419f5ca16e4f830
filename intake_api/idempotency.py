"""``Idempotency-Key``: a repeated request gets the stored response, never a second complaint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository
from intake_api.models import IdempotencyKey
from shared.clock import Clock
from shared.db import Database
from shared.problems import Problem, invalid

# A claim whose request never finished (its process died) may be taken over after this long.
ABANDONED_AFTER = timedelta(seconds=60)
# API.md: a key is kept at least 24 hours. After that its stored response (the complaint as
# answered, reporter included) is deleted, not kept for ever.
RETENTION = timedelta(hours=24)
PURGE_EVERY_SECONDS = 3600.0
MAX_KEY_LENGTH = 255

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str  # the response body exactly as first sent
    location: str | None


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise invalid("/header/Idempotency-Key",
                      f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} printable characters")


async def claim(database: Database, caller: str, key: str,
                fingerprint: str) -> StoredResponse | None:
    """Claims the key for this request, or returns the response stored for it.

    Raises 422 when the key was used with another body and 409 while the first is in flight.
    """
    async with database.transaction() as session:
        if await repository.claim_idempotency_key(session, caller, key, fingerprint):
            return None
        row = await repository.get_idempotency_key(session, caller, key)
        if row is None:  # removed between the two statements: treat as in flight
            raise Problem(409, "A request with this Idempotency-Key is still in progress.")
        if row.request_hash != fingerprint:
            raise invalid("/header/Idempotency-Key",
                          "This Idempotency-Key was used with a different request body.")
        if row.status_code is not None and row.response is not None:
            return StoredResponse(row.status_code, row.response, row.location)
        if datetime.now(UTC) - row.created_at < ABANDONED_AFTER:
            raise Problem(409, "A request with this Idempotency-Key is still in progress.")
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.caller == caller, IdempotencyKey.key == key)
            .values(created_at=datetime.now(UTC))
        )
        return None


async def record(session: AsyncSession, caller: str, key: str,
                 response: StoredResponse) -> None:
    """Stores the answer to replay, in the caller's transaction."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.caller == caller, IdempotencyKey.key == key)
        .values(status_code=response.status_code, response=response.body,
                location=response.location)
    )


async def release(database: Database, caller: str, key: str) -> None:
    async with database.transaction() as session:
        await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.caller == caller,
                                         IdempotencyKey.key == key)
        )


async def purge_expired(database: Database, now: datetime,
                        retention: timedelta = RETENTION) -> int:
    """Deletes keys first used more than ``retention`` before ``now``; returns how many."""
    async with database.transaction() as session:
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < now - retention))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def keep_purging(database: Database, clock: Clock) -> None:
    """Purges at start and then every hour (the intake service runs it in the background)."""
    while True:
        purged = await purge_expired(database, clock.now())
        if purged:
            logger.info("purged %d idempotency keys older than %s", purged, RETENTION)
        await asyncio.sleep(PURGE_EVERY_SECONDS)
