"""Migration ``20261130_revoked_owners_hooks`` on a database where a revoked token's
subscription was left active with a delivery pending (revoked before revocation stopped them)."""

from __future__ import annotations

import asyncio
import uuid

from alembic import command
from sqlalchemy import text

from services.migrate import alembic_config
from shared.db import Database

PREVIOUS = "20261130_summary_reads"


async def test_upgrade_stops_the_subscriptions_of_revoked_tokens(database_url: str) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, PREVIOUS)
    owners = {"narahubung-lama": "now()", "posko-pln": "NULL"}
    subscriptions = {owner: uuid.uuid4() for owner in owners}
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        for owner, revoked in owners.items():
            await session.execute(text(
                "INSERT INTO auth.tokens (name, role, token_hash, created_at, revoked_at) "
                f"VALUES (:owner, 'partner', md5(:key), now(), {revoked})"),
                {"owner": owner, "key": owner})
            await session.execute(text("""
                INSERT INTO intake.webhook_subscriptions (id, owner, role, url, origin, events,
                                                          secret, created_at)
                VALUES (:id, :owner, 'partner', 'https://h.example.id/', 'https://h.example.id',
                        ARRAY['complaint.received'], 'whsec_x', now())"""),
                {"id": subscriptions[owner], "owner": owner})
            await session.execute(text("""
                INSERT INTO intake.webhook_deliveries (id, subscription_id, event_id, event_type,
                                                       body, retrying_since, next_attempt_at,
                                                       created_at)
                VALUES (:id, :subscription, 'e1', 'complaint.received', '{}', now(), now(),
                        now())"""), {"id": uuid.uuid4(), "subscription": subscriptions[owner]})

    await asyncio.to_thread(command.upgrade, config, "head")

    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        rows = {owner: (active, reason, status) for owner, active, reason, status in
                await session.execute(text("""
                    SELECT s.owner, s.active, s.disabled_reason, d.status
                    FROM intake.webhook_subscriptions s
                    JOIN intake.webhook_deliveries d ON d.subscription_id = s.id"""))}
    assert rows == {"narahubung-lama": (False, "the owner's token was revoked", "failed"),
                    "posko-pln": (True, None, "pending")}
