"""The dispatcher sleeps until told: a new delivery, or the due time of a retry, wakes it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

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


# Eight slots; a subscription, an owner or an origin may hold two, four and four of them.
SHARES: dict[str, Any] = {**FAST, "webhook_timeout_seconds": 30.0, "webhook_concurrency": 8,
                          "webhook_concurrency_per_subscription": 2,
                          "webhook_concurrency_per_owner": 4,
                          "webhook_concurrency_per_origin": 4}


@pytest.mark.parametrize("crowd", ["one owner, many receivers", "many owners, one receiver"])
async def test_hanging_receivers_hold_only_their_share_and_the_others_are_served(
        services: BackingServices, crowd: str) -> None:
    """Eight deliveries to receivers that hang could fill all eight slots; they get four (one
    owner's share, or one origin's), and a healthy receiver is served while they hang."""
    partner = await services.token("partner", "posko-sehat")
    crowded = [await services.token("partner", f"posko-lambat-{n}") for n in range(2)]
    with receiving(delay=60) as slow_a, receiving(delay=60) as slow_b, \
            receiving(delay=60) as slow_c, receiving(delay=60) as slow_d, \
            receiving() as healthy:
        slow = [slow_a, slow_b, slow_c, slow_d]
        async with running_app(services, **SHARES) as client:
            if crowd == "one owner, many receivers":
                senders = [crowded[0]]
                for receiver in slow:
                    await subscribe(client, crowded[0], receiver.url, ["complaint.received"])
            else:
                senders = crowded
                for token in crowded:
                    for _ in range(2):
                        await subscribe(client, token, slow_a.url, ["complaint.received"])
            await subscribe(client, partner, healthy.url, ["complaint.received"])
            for token in senders:
                for _ in range(4 // len(senders)):
                    posted = await client.post("/v1/complaints", json=complaint(),
                                               headers=bearer(token))
                    assert posted.status_code == 201, posted.text

            def hanging() -> int:
                return sum(len(receiver.requests()) for receiver in slow)

            async def share_taken() -> None:
                assert hanging() >= 4

            await eventually(share_taken, timeout=15)
            posted = await client.post("/v1/complaints", json=complaint(),
                                       headers=bearer(partner))
            assert posted.status_code == 201, posted.text

            async def served() -> None:
                assert len(healthy.requests()) == 1

            # The hanging attempts end only after 30 s: the healthy delivery went out beside
            # them, into a slot their eight due deliveries were not allowed to take.
            await eventually(served, timeout=15)
            assert hanging() == 4
            assert all(receiver.answered() == 0 for receiver in slow)
