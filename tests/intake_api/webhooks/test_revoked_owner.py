"""A revoked token's subscriptions stop at once: nothing more is made or sent for them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.case_api.helpers import AGENCY
from tests.intake_api.webhooks.receiver import receiving
from tests.intake_api.webhooks.test_delivery import FAST, subscribe
from tests.support import BackingServices, bearer, complaint, eventually, query, running_app

# Retries a few tenths of a second apart for a minute: a receiver that keeps failing keeps
# being tried while the test looks.
RETRYING: dict[str, Any] = {**FAST, "webhook_retry_base_seconds": 0.2,
                            "webhook_retry_max_seconds": 0.4, "webhook_retry_for_seconds": 60}


async def revoke(backing: BackingServices, name: str, how: str) -> None:
    if how == "command":  # as an administrator does, from another process
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.cli", "token", "revoke", name],
            env=backing.env(), capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    else:  # straight in the database, as any other tool could
        await query(backing.database_url,
                    "UPDATE auth.tokens SET revoked_at = now() WHERE name = $1", name)


@pytest.mark.parametrize("how", ["command", "database"])
async def test_a_revoked_tokens_subscriptions_receive_nothing_more(
    services: BackingServices, how: str,
) -> None:
    partner = await services.token("partner", "posko-pln")
    liaison = await services.token("liaison", "narahubung-lama", agency=AGENCY)
    with receiving(status=500) as revoked_hooks, receiving() as partner_hooks:
        async with running_app(services, **RETRYING) as client:
            gone = await subscribe(client, liaison, revoked_hooks.url, ["complaint.received"])
            await subscribe(client, partner, partner_hooks.url, ["complaint.received"])
            first = await client.post("/v1/complaints", json=complaint(),
                                      headers=bearer(partner))
            assert first.status_code == 201, first.text

            async def retried() -> None:
                assert len(revoked_hooks.requests()) >= 2

            await eventually(retried, timeout=30)
            await revoke(services, "narahubung-lama", how)
            await asyncio.sleep(1.0)  # an attempt already on its way may still arrive
            heard = len(revoked_hooks.requests())

            second = await client.post("/v1/complaints", json=complaint(),
                                       headers=bearer(partner))
            assert second.status_code == 201, second.text

            async def partner_heard_both() -> None:
                assert len(partner_hooks.requests()) == 2

            await eventually(partner_heard_both, timeout=30)
            await asyncio.sleep(1.5)  # several retry intervals
            assert len(revoked_hooks.requests()) == heard
            assert second.json()["id"] not in str(revoked_hooks.bodies())
            made = await query(services.database_url,
                               "SELECT count(*) AS n FROM intake.webhook_deliveries "
                               "WHERE subscription_id = $1", uuid.UUID(gone["id"]))
            assert made[0]["n"] == 1  # none for the second complaint

    if how == "database":  # revoked by other means: the command stops what it still holds
        still = await query(services.database_url,
                            "SELECT count(*) AS n FROM intake.webhook_deliveries "
                            "WHERE subscription_id = $1 AND status = 'pending'",
                            uuid.UUID(gone["id"]))
        assert still[0]["n"] == 1  # not sent, yet pending: as an upgraded database had them
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.cli", "token", "revoke",
                             "narahubung-lama"],
            env=services.env(), capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "was revoked already" in done.stdout
        assert "1 webhook subscription(s) it held stopped" in done.stdout
    # The revocation says so on the subscription and its deliveries.
    gone_id = uuid.UUID(gone["id"])
    rows = await query(services.database_url,
                       "SELECT active, disabled_reason FROM intake.webhook_subscriptions "
                       "WHERE id = $1", gone_id)
    assert not rows[0]["active"]
    assert "revoked" in rows[0]["disabled_reason"]
    pending = await query(services.database_url,
                          "SELECT count(*) AS n FROM intake.webhook_deliveries "
                          "WHERE subscription_id = $1 AND status = 'pending'", gone_id)
    assert pending[0]["n"] == 0
