"""``Idempotency-Key``: a repeated request gets the stored response, never a second complaint."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Response
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository
from intake_api.models import IdempotencyKey
from shared.clock import Clock
from shared.db import Database
from shared.problems import PROBLEM_JSON, Problem, invalid

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

    @classmethod
    def of(cls, response: Response) -> StoredResponse:
        return cls(response.status_code, bytes(response.body).decode(),
                   response.headers.get("location"))

    def replay(self) -> Response:
        """The very bytes of the first answer, not a re-rendering of them."""
        headers = {"Idempotent-Replayed": "true"}
        if self.location:
            headers["Location"] = self.location
        media = "application/json" if self.status_code < 400 else PROBLEM_JSON
        return Response(self.body.encode(), status_code=self.status_code, headers=headers,
                        media_type=media)


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise invalid("/header/Idempotency-Key",
                      f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} printable characters")


async def claim(database: Database, caller: str, key: str, fingerprint: str,
                now: datetime) -> StoredResponse | None:
    """Claims the key for this request, or returns the response stored for it.

    Raises 422 when the key was used with another body and 409 while the first is in flight.
    """
    async with database.transaction() as session:
        if await repository.claim_idempotency_key(session, caller, key, fingerprint, now):
            return None
        row = await repository.get_idempotency_key(session, caller, key)
        if row is None:  # removed between the two statements: treat as in flight
            raise Problem(409, "A request with this Idempotency-Key is still in progress.")
        if row.request_hash != fingerprint:
            raise invalid("/header/Idempotency-Key",
                          "This Idempotency-Key was used with a different request body.")
        if row.status_code is not None and row.response is not None:
            return StoredResponse(row.status_code, row.response, row.location)
        if now - row.created_at < ABANDONED_AFTER:
            raise Problem(409, "A request with this Idempotency-Key is still in progress.")
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.caller == caller, IdempotencyKey.key == key)
            .values(created_at=now)
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


async def replay_or_run(database: Database, session: AsyncSession, *, caller: str,
                        key: str | None, read_body: Callable[[], Awaitable[Any]],
                        now: datetime, run: Callable[[], Awaitable[Response]]) -> Response:
    """``run()``'s response, kept under ``key``; a repeat of the request gets it replayed.

    The response is recorded in ``session``, the request's own transaction, so it is kept
    exactly when the effect is. A refusal (a ``Problem``) rolls that transaction back, so it is
    recorded in one of its own; anything else releases the key for a retry.
    """
    if key is None:
        return await run()
    check_key(key)
    stored = await claim(database, caller, key, request_fingerprint(await read_body()), now)
    if stored is not None:
        return stored.replay()
    try:
        response = await run()
        await record(session, caller, key, StoredResponse.of(response))
    except Problem as problem:
        async with database.transaction() as own:
            await record(own, caller, key, StoredResponse.of(problem.response()))
        raise
    except BaseException:
        await release(database, caller, key)
        raise
    return response


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
