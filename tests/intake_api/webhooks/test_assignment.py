"""An attachment added after its case was given an agency reaches that agency's liaisons, even when
this service applies the assignment only after the upload (its own consumer lagging)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx

from intake_api.consumer import CONSUMER as INTAKE_STATUS
from shared.db import asyncpg_dsn
from tests.case_api.helpers import Tokens, ok
from tests.case_api.test_assign_agency import PLN, post_unassigned
from tests.intake_api.webhooks.receiver import receiving
from tests.intake_api.webhooks.test_delivery import FAST, PDF, subscribe, verified
from tests.support import BackingServices, bearer, eventually, running_app

EVENTS = ["attachment.added", "complaint.status_changed"]


async def upload(client: httpx.AsyncClient, token: str, case_id: str, filename: str, *,
                 confidential: bool = False) -> str:
    response = await client.post(
        f"/v1/complaints/{case_id}/attachments", headers=bearer(token),
        files={"file": (filename, PDF, "application/pdf")},
        data={"confidential": "true" if confidential else "false"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@asynccontextmanager
async def held_back(database_url: str, event_id: str) -> AsyncIterator[None]:
    """The intake-status consumer waits on ``event_id`` until the block ends: the event's
    processed-row is claimed by an open transaction, so its claim waits (a lagging consumer)."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            "INSERT INTO intake.processed_events (consumer, event_id) VALUES ($1, $2)",
            INTAKE_STATUS, event_id)
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


async def assignment_event_id(database_url: str, case_id: str) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        found = await connection.fetchval(
            "SELECT envelope->>'id' FROM cases.outbox WHERE key = $1 "
            "AND envelope->'data'->>'action' = 'assign_agency'", case_id)
    finally:
        await connection.close()
    assert isinstance(found, str)
    return found


async def test_an_attachment_added_after_the_assignment_reaches_the_new_agency(
    services: BackingServices,
) -> None:
    """Filed ``unassigned``; a file added before the assignment is not the new agency's news; the
    case then given to PLN while this service is down; a file added once it is back, before its
    own consumer has applied the step (the webhooks' consumer has heard of both by then); a
    file added after that. PLN's liaison hears of the two files added after the assignment
    (not of the confidential one), once each; the partner who filed it of all four."""
    tokens = await Tokens.create(services)
    with receiving() as liaison_hooks, receiving() as partner_hooks:
        async with running_app(services, **FAST) as client:
            liaison = await subscribe(client, tokens.liaison, liaison_hooks.url, EVENTS)
            await subscribe(client, tokens.partner, partner_hooks.url, ["attachment.added"])
            _, case_id = await post_unassigned(client, tokens)
            await upload(client, tokens.partner, case_id, "before.pdf")
        async with running_app(services, "case", **FAST) as cases:
            assigned = await ok(cases, tokens.assistant, case_id, "assign_agency",
                                reported_agency=PLN)
        step = await assignment_event_id(services.database_url, case_id)
        async with running_app(services, "intake", **FAST) as client:
            async with held_back(services.database_url, step):
                lagging = await upload(client, tokens.partner, case_id, "lagging.pdf")
                await upload(client, tokens.partner, case_id, "secret.pdf", confidential=True)

                async def heard_both() -> None:
                    assert len(partner_hooks.bodies()) == 3
                    assert [b["data"]["version"]
                            for b in liaison_hooks.bodies("complaint.status_changed")] \
                        == [assigned["version"]]

                await eventually(heard_both)
                # Not yet applied here: the complaint still shows no agency to its liaison.
                hidden = await client.get(f"/v1/complaints/{case_id}/attachments",
                                          headers=bearer(tokens.liaison))
                assert hidden.status_code == 404
            after = await upload(client, tokens.partner, case_id, "after.pdf")

            async def announced() -> None:
                assert len(liaison_hooks.bodies("attachment.added")) == 2
                assert len(partner_hooks.bodies()) == 4

            await eventually(announced)
            shown = await client.get(f"/v1/complaints/{case_id}/attachments",
                                     headers=bearer(tokens.liaison))
            assert shown.status_code == 200
            assert len(shown.json()["items"]) == 3  # all but the confidential one
    bodies = [b for b in verified(liaison_hooks, liaison["secret"])
              if b["type"] == "attachment.added"]
    assert sorted(b["data"]["attachment_id"] for b in bodies) == sorted([lagging, after])
    assert all(b["data"]["id"] == case_id and b["data"]["confidential"] is False
               for b in bodies)
    assert {b["data"]["filename"] for b in bodies} == {"lagging.pdf", "after.pdf"}
