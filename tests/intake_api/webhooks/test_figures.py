"""Webhook deliveries by status on ``GET /metrics``."""

from __future__ import annotations

import re

from tests.support import BackingServices, bearer, complaint, eventually, running_app


async def test_deliveries_are_counted_by_status(services: BackingServices) -> None:
    partner = await services.token("partner", "posko-pln")
    async with running_app(services, webhook_allow_http=True,
                           webhook_allow_private=True) as client:
        subscribed = await client.post("/v1/webhooks", headers=bearer(partner), json={
            "url": "http://127.0.0.1:9/hooks", "events": ["complaint.received"]})
        assert subscribed.status_code == 201, subscribed.text
        created = await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))
        assert created.status_code == 201

        async def counted() -> None:
            figures = (await client.get("/metrics")).text
            assert re.search(r'^aduan_webhook_deliveries\{status="\w+"\} 1\.0$', figures,
                             re.MULTILINE), figures

        await eventually(counted)
