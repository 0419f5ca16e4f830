"""Migration ``20261130_webhook_origins`` on a database holding subscriptions.

Subscriptions stored before the column (any spelling of their URL, one stored before URLs were
checked) get the origin the code gives a URL stored today.
"""

from __future__ import annotations

import asyncio
import uuid

from alembic import command
from sqlalchemy import text

from intake_api.webhooks.targets import origin_of
from services.migrate import alembic_config
from shared.db import Database

PREVIOUS = "20261130_bi_no_temporary"
URLS = ["https://hooks.example.id/a", "https://HOOKS.example.id:443/b",
        "https://hooks.example.id./c", "https://Bücher.example./d", "https://[2001:db8::1]/e",
        "http://hooks.example.id:8080/f", "https://a..b/g"]


async def test_upgrade_gives_each_stored_subscription_its_origin(database_url: str) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, PREVIOUS)
    ids = {uuid.uuid4(): url for url in URLS}
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        await session.execute(text("""
            INSERT INTO intake.webhook_subscriptions (id, owner, role, url, events, secret,
                                                      created_at)
            VALUES (:id, 'posko', 'partner', :url, ARRAY['complaint.received'], 'whsec_x',
                    now())"""), [{"id": i, "url": url} for i, url in ids.items()])

    await asyncio.to_thread(command.upgrade, config, "head")

    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        stored = {subscription_id: origin for subscription_id, origin in await session.execute(
            text("SELECT id, origin FROM intake.webhook_subscriptions"))}
    assert stored == {i: origin_of(url) for i, url in ids.items()}
    assert len(set(stored.values())) == 5  # the first three are one server
