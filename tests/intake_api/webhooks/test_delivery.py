"""Deliveries to real receivers on loopback, verified with the ``standardwebhooks`` library."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from intake_api.webhooks import repository
from shared.db import Database
from tests.case_api.helpers import AGENCY, Tokens, ok, post_complaint, wait_case
from tests.intake_api.webhooks.receiver import Receiver, receiving
from tests.support import BackingServices, bearer, complaint, eventually, running_app

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"
# Retries in fractions of a second; no polling: every delivery here goes out because its event
# or its due time woke the dispatcher (the poll and the fallback are an hour).
FAST: dict[str, Any] = {"webhook_allow_http": True, "webhook_allow_private": True,
        "webhook_poll_seconds": 3600, "wakeup_fallback_seconds": 3600,
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_max_seconds": 0.2, "webhook_retry_for_seconds": 1.5,
        "webhook_timeout_seconds": 5.0}


async def subscribe(client: httpx.AsyncClient, token: str, url: str,
                    events: list[str]) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json={"url": url, "events": events},
                                 headers=bearer(token))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def verified(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every body the receiver got, each signature checked by the reference library."""
    hook = Webhook(secret)
    bodies = []
    for request in receiver.requests():
        payload = hook.verify(request.body, request.headers)
        assert isinstance(payload, dict)
        bodies.append(payload)
    return bodies


async def deliveries(client: httpx.AsyncClient, token: str, subscription: dict[str, Any],
                     status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = await client.get(f"/v1/webhooks/{subscription['id']}/deliveries",
                                params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_signed_deliveries_reach_each_subscriber_in_its_scope(
    backing: BackingServices,
) -> None:
    tokens = await Tokens.create(backing)
    other_partner = await backing.token("partner", "posko-lain")
    with receiving() as partner_hooks, receiving() as liaison_hooks, \
            receiving() as other_hooks:
        async with running_app(backing, **FAST) as client:
            mine = await subscribe(client, tokens.partner, partner_hooks.url,
                                   ["complaint.received", "complaint.status_changed"])
            agency = await subscribe(client, tokens.liaison, liaison_hooks.url,
                                     ["case.awaiting_agency", "complaint.status_changed"])
            await subscribe(client, other_partner, other_hooks.url,
                            ["complaint.received", "complaint.status_changed"])
            case_id = await post_complaint(client, tokens)
            await wait_case(client, tokens.assistant, case_id)
            await ok(client, tokens.assistant, case_id, "register")
            await ok(client, tokens.assistant, case_id, "start_examination", assignee="a.1")
            asked = await ok(client, tokens.assistant, case_id, "request_clarification",
                             note="Mohon penjelasan tertulis")

            async def all_arrived() -> None:
                assert len(partner_hooks.requests()) == 4  # received + three transitions
                assert len(liaison_hooks.requests()) == 4  # three transitions + awaiting

            await eventually(all_arrived, timeout=30)
            bodies = verified(partner_hooks, mine["secret"])
            received = [b for b in bodies if b["type"] == "complaint.received"]
            assert len(received) == 1
            assert received[0]["data"]["id"] == case_id
            assert "access_code" not in received[0]["data"]
            changes = sorted((b for b in bodies if b["type"] == "complaint.status_changed"),
                             key=lambda b: b["data"]["version"])
            assert [c["data"]["outcome"]["status"] for c in changes] == [
                "registered", "in_examination", "awaiting_agency"]
            assert changes[-1]["data"]["outcome"]["due_at"] == asked["due_at"]
            assert set(changes[-1]["data"]) == {"id", "tracking_number", "outcome", "version"}
            assert "Mohon penjelasan" not in str(bodies)

            waiting = [b for b in verified(liaison_hooks, agency["secret"])
                       if b["type"] == "case.awaiting_agency"]
            assert len(waiting) == 1
            assert waiting[0]["data"]["due_at"] == asked["due_at"]
            assert waiting[0]["data"]["agency"] == AGENCY
            assert other_hooks.requests() == []

            # A receiver has the request a moment before its delivery is marked delivered.
            async def all_marked() -> list[dict[str, Any]]:
                log = await deliveries(client, tokens.partner, mine, "delivered")
                assert len(log) == 4
                return log

            log = await eventually(all_marked, timeout=10)
            assert {d["status"] for d in log} == {"delivered"}
            assert all(d["attempts"] == 1 and d["last_status_code"] == 204 for d in log)
            assert {r.headers["webhook-id"] for r in partner_hooks.requests()} == {
                d["id"] for d in log}


async def test_a_failing_receiver_is_retried_then_failed_then_retried_by_hand(
    services: BackingServices,
) -> None:
    partner = await services.token("partner")
    with receiving(status=500) as hooks:
        async with running_app(services, **FAST) as client:
            subscription = await subscribe(client, partner, hooks.url, ["complaint.received"])
            await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))

            async def failed() -> dict[str, Any]:
                items = await deliveries(client, partner, subscription, "failed")
                assert len(items) == 1
                return items[0]

            delivery = await eventually(failed, timeout=30)
            assert delivery["attempts"] >= 2, delivery
            assert delivery["last_status_code"] == 500
            assert delivery["next_attempt_at"] is None
            attempts = hooks.requests()
            assert len(attempts) == delivery["attempts"]
            assert {r.headers["webhook-id"] for r in attempts} == {delivery["id"]}
            assert len({r.body for r in attempts}) == 1
            assert await deliveries(client, partner, subscription, "pending") == []

            hooks.status = 200
            retry = f"/v1/webhooks/{subscription['id']}/deliveries/{delivery['id']}/retry"
            again = await client.post(retry, headers=bearer(partner))
            assert again.status_code == 202, again.text
            assert again.json()["status"] == "pending"

            async def delivered() -> None:
                items = await deliveries(client, partner, subscription, "delivered")
                assert [d["id"] for d in items] == [delivery["id"]]

            await eventually(delivered, timeout=20)
            verified(hooks, subscription["secret"])
            twice = await client.post(retry, headers=bearer(partner))
            assert twice.status_code == 409
            assert twice.headers["content-type"] == "application/problem+json"


async def test_410_disables_the_subscription(services: BackingServices) -> None:
    partner = await services.token("partner")
    with receiving(status=410) as hooks:
        async with running_app(services, **FAST) as client:
            subscription = await subscribe(client, partner, hooks.url, ["complaint.received"])
            await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))

            async def disabled() -> None:
                body = (await client.get(f"/v1/webhooks/{subscription['id']}",
                                         headers=bearer(partner))).json()
                assert body["active"] is False

            await eventually(disabled, timeout=20)
            await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))
            await asyncio.sleep(1.0)
            assert len(hooks.requests()) == 1
            failed = await deliveries(client, partner, subscription, "failed")
            assert len(failed) == 1
            assert failed[0]["last_status_code"] == 410
    database = Database.connect(services.database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            assert await repository.counts_by_status(session) == {
                "pending": 0, "delivered": 0, "failed": 1}
    finally:
        await database.dispose()


async def test_a_hanging_receiver_does_not_delay_the_others(services: BackingServices) -> None:
    partner = await services.token("partner", "posko-a")
    hanging_partner = await services.token("partner", "posko-b")
    settings: dict[str, Any] = {**FAST, "webhook_timeout_seconds": 20.0,
                "webhook_concurrency_per_subscription": 1, "webhook_concurrency": 4}
    with receiving(delay=30) as stuck, receiving() as healthy:
        async with running_app(services, **settings) as client:
            await subscribe(client, hanging_partner, stuck.url, ["complaint.received"])
            await subscribe(client, partner, healthy.url, ["complaint.received"])
            for _ in range(4):
                await client.post("/v1/complaints", json=complaint(),
                                  headers=bearer(hanging_partner))
            for _ in range(4):
                await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))

            async def all_healthy() -> None:
                assert len(healthy.requests()) == 4

            await eventually(all_healthy, timeout=15)
            # One attempt at a time for the stuck receiver: the others wait their turn there,
            # and nobody else's deliveries wait behind it.
            assert len(stuck.requests()) == 1


async def test_a_receiver_that_does_not_answer_in_time_is_retried(
    services: BackingServices,
) -> None:
    partner = await services.token("partner")
    with receiving(delay=3) as slow:
        async with running_app(services, **{**FAST, "webhook_timeout_seconds": 1.0}) as client:
            subscription = await subscribe(client, partner, slow.url, ["complaint.received"])
            await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))

            async def timed_out() -> None:
                items = await deliveries(client, partner, subscription)
                assert len(items) == 1
                assert items[0]["attempts"] >= 1
                assert items[0]["status"] != "delivered"
                assert "no answer within 1 s" in items[0]["last_error"]
                assert items[0]["last_status_code"] is None

            await eventually(timed_out, timeout=20)


async def test_attachments_are_announced_and_confidential_ones_not_to_liaisons(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    with receiving() as partner_hooks, receiving() as liaison_hooks:
        async with running_app(services, **FAST) as client:
            mine = await subscribe(client, tokens.partner, partner_hooks.url,
                                   ["attachment.added"])
            await subscribe(client, tokens.liaison, liaison_hooks.url, ["attachment.added"])
            case_id = await post_complaint(client, tokens)
            for confidential in ("false", "true"):
                uploaded = await client.post(
                    f"/v1/complaints/{case_id}/attachments", headers=bearer(tokens.partner),
                    files={"file": ("kuitansi.pdf", PDF, "application/pdf")},
                    data={"confidential": confidential})
                assert uploaded.status_code == 201, uploaded.text

            async def announced() -> None:
                assert len(partner_hooks.requests()) == 2
                assert len(liaison_hooks.requests()) == 1

            await eventually(announced, timeout=30)
            bodies = verified(partner_hooks, mine["secret"])
            assert {b["type"] for b in bodies} == {"attachment.added"}
            assert {b["data"]["confidential"] for b in bodies} == {True, False}
            assert all(b["data"]["id"] == case_id and b["data"]["filename"] == "kuitansi.pdf"
                       for b in bodies)
            assert liaison_hooks.bodies()[0]["data"]["confidential"] is False


async def test_private_targets_are_refused_again_when_delivering(
    services: BackingServices,
) -> None:
    partner = await services.token("partner")
    with receiving() as hooks:
        async with running_app(services, **FAST) as client:
            subscription = await subscribe(client, partner, hooks.url, ["complaint.received"])
        # The same subscription, served where private addresses are not allowed.
        async with running_app(services, **{**FAST, "webhook_allow_private": False}) as client:
            await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))

            async def refused() -> None:
                items = await deliveries(client, partner, subscription)
                assert len(items) == 1
                assert items[0]["attempts"] >= 1
                assert "refused target: 127.0.0.1" in items[0]["last_error"]

            await eventually(refused, timeout=20)
            assert hooks.requests() == []
