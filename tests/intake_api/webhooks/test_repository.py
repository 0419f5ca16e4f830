"""The due-deliveries query shares the dispatcher's slots out by origin, however its
subscribers spelled it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from intake_api.webhooks import repository
from intake_api.webhooks.models import WebhookDelivery, WebhookSubscription
from intake_api.webhooks.repository import Saturated, Shares
from intake_api.webhooks.targets import origin_of
from shared.auth import Role
from shared.db import Database
from tests.support import BackingServices

NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)
# One server, four spellings, four owners; and another port of the same host.
SAME_SERVER = ["https://hooks.example.id/a", "https://HOOKS.example.id:443/b",
               "https://hooks.example.id./c", "https://hooks.EXAMPLE.id.:443/d"]
ELSEWHERE = "https://hooks.example.id:8443/e"


async def test_one_origin_however_spelled_holds_one_share(services: BackingServices) -> None:
    async with Database.opened(services.database_url, pool_size=1) as database:
        async with database.transaction() as session:
            for n, url in enumerate([*SAME_SERVER, ELSEWHERE]):
                subscription = WebhookSubscription(
                    id=uuid.uuid4(), owner=f"posko-{n}", role=Role.partner.value,
                    agency_code=None, url=url, events=["complaint.received"],
                    secret="whsec_x", created_at=NOW)
                session.add(subscription)
                await session.flush()
                for k in range(2):
                    at = NOW - timedelta(minutes=10 - k)
                    session.add(WebhookDelivery(
                        id=uuid.uuid4(), subscription_id=subscription.id,
                        event_id=f"event-{n}-{k}", event_type="complaint.received", body="{}",
                        status="pending", attempts=0, next_attempt_at=at, retrying_since=at,
                        created_at=at))
        async with database.transaction() as session:
            stored = set((await session.execute(
                select(WebhookSubscription.origin))).scalars())
            assert stored == {"https://hooks.example.id:443", "https://hooks.example.id:8443"}

            shares = Shares(per_subscription=8, per_owner=8, per_origin=1)
            due = await repository.due(session, NOW, saturated=Saturated(), shares=shares,
                                       limit=20)
            assert sorted(c.origin for c in due) == sorted(origin_of(u)
                                                           for u in (SAME_SERVER[0], ELSEWHERE))

            wider = await repository.due(session, NOW, saturated=Saturated(),
                                         shares=Shares(8, 8, 3), limit=20)
            assert len([c for c in wider if c.origin == origin_of(SAME_SERVER[0])]) == 3

            # Saturated under one spelling, the server is saturated under all of them.
            full = Saturated(origins=[origin_of("https://hooks.example.id")])
            others = await repository.due(session, NOW, saturated=full, shares=shares,
                                          limit=20)
            assert [c.origin for c in others] == [origin_of(ELSEWHERE)]
            assert await repository.next_due(session, saturated=full) == NOW - timedelta(
                minutes=10)
