"""The dispatcher sleeps until told: a new delivery, or the due time of a retry, wakes it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from intake_api.webhooks.dispatcher import Dispatcher
from intake_api.webhooks.models import WebhookDelivery, WebhookSubscription
from intake_api.webhooks.signing import new_secret
from shared.db import Database
from tests.intake_api.webhooks.receiver import receiving
from tests.intake_api.webhooks.test_delivery import FAST, deliveries, subscribe
from tests.support import BackingServices, bearer, complaint, eventually, running_app


async def test_deliveries_and_their_retries_go_out_with_an_hour_long_poll(
        services: BackingServices) -> None:
    partner = await services.token("partner")
    with receiving(status=500) as hooks:
        async with running_app(services, **{**FAST, "webhook_poll_seconds": 3600,
                                             "wakeup_fallback_seconds": 3600,
                                             "webhook_retry_for_seconds": 600}) as client:
            subscription = await subscribe(client, partner, hooks.url, ["complaint.received"])
            created = await client.post("/v1/complaints", json=complaint(),
                                        headers=bearer(partner))
            assert created.status_code == 201, created.text

            async def tried_three_times() -> None:
                # The first attempt follows the event's notification; the next two wait for
                # their backoff to run out, with nothing announced in between.
                assert len(hooks.requests()) >= 3

            await eventually(tried_three_times, timeout=30)
            hooks.status = 204

            async def delivered() -> dict[str, Any]:
                items = await deliveries(client, partner, subscription, "delivered")
                assert len(items) == 1
                return items[0]

            delivery = await eventually(delivered, timeout=30)
    assert delivery["attempts"] == len(hooks.requests()) >= 4
    assert delivery["last_status_code"] == 204
    assert {r.headers["webhook-id"] for r in hooks.requests()} == {delivery["id"]}


async def test_an_attempt_to_a_host_that_is_no_name_is_an_ordinary_failure(
        services: BackingServices) -> None:
    """A subscription stored before such URLs were refused still fails each attempt cleanly."""
    async with Database.opened(services.database_url) as database, httpx.AsyncClient() as http:
        dispatcher = Dispatcher(database, services.settings())
        for url in ("https://.com/", "https://a..b/x", f"https://{'a' * 300}.example.id/"):
            subscription = WebhookSubscription(id=uuid.uuid4(), url=url, secret=new_secret())
            delivery = WebhookDelivery(id=uuid.uuid4(), body='{"type": "complaint.received"}')
            status, error = await dispatcher.attempt(http, delivery, subscription)
            assert status is None, url
            assert error is not None
            assert error.startswith("refused target"), (url, error)
