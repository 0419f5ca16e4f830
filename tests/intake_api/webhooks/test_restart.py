"""A process killed with deliveries pending: its successor sends each of them, once."""

from __future__ import annotations

from typing import Any

import httpx

from tests.intake_api.webhooks.receiver import receiving
from tests.support import BackingServices, ServiceProcess, bearer, complaint, eventually

SETTINGS = {"ADUAN_WEBHOOK_ALLOW_HTTP": "true", "ADUAN_WEBHOOK_ALLOW_PRIVATE": "true",
            "ADUAN_WEBHOOK_POLL_SECONDS": "0.05", "ADUAN_WEBHOOK_RETRY_BASE_SECONDS": "0.5",
            "ADUAN_WEBHOOK_RETRY_MAX_SECONDS": "1", "ADUAN_WEBHOOK_TIMEOUT_SECONDS": "5"}
COMPLAINTS = 5


async def test_pending_deliveries_survive_a_kill_9(backing: BackingServices) -> None:
    services = backing
    partner = await services.token("partner")
    log = services.workdir / "server.log"
    with receiving(status=503) as hooks:
        first = ServiceProcess("all", services.env(**SETTINGS), log).start()
        try:
            await first.wait_ready()
            async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
                created = await client.post("/v1/webhooks", headers=bearer(partner), json={
                    "url": hooks.url, "events": ["complaint.received"]})
                assert created.status_code == 201, created.text
                subscription: dict[str, Any] = created.json()
                for _ in range(COMPLAINTS):
                    response = await client.post("/v1/complaints", json=complaint(),
                                                 headers=bearer(partner))
                    assert response.status_code == 201

                async def all_tried() -> None:
                    assert len({r.headers["webhook-id"] for r in hooks.requests()}) == COMPLAINTS

                await eventually(all_tried, timeout=30)
        finally:
            first.stop(kill=True)
        hooks.status = 204

        second = ServiceProcess("all", services.env(**SETTINGS), log).start()
        try:
            await second.wait_ready()
            async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
                path = f"/v1/webhooks/{subscription['id']}/deliveries"

                async def all_delivered() -> list[dict[str, Any]]:
                    items: list[dict[str, Any]] = (await client.get(
                        path, headers=bearer(partner))).json()["items"]
                    assert len(items) == COMPLAINTS
                    assert {d["status"] for d in items} == {"delivered"}
                    return items

                delivered = await eventually(all_delivered, timeout=60)
        finally:
            second.stop()
    requests = hooks.requests()
    accepted = sorted(r.headers["webhook-id"] for r in requests if r.answered == 204)
    # Each delivery accepted exactly once, after having been refused before the kill.
    assert accepted == sorted(d["id"] for d in delivered)
    refused = {r.headers["webhook-id"] for r in requests if r.answered == 503}
    assert refused == set(accepted)
