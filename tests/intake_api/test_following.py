"""Following a complaint: the outcome on every answer, and finding it by its tracking number."""

from __future__ import annotations

from typing import Any

import httpx

from tests.case_api.helpers import Tokens, ok, post_complaint, wait_case
from tests.support import BackingServices, bearer, complaint, eventually, running_app

OUTCOME_FIELDS = {"status", "updated_at", "due_at", "closure_stage", "closure_reason",
                  "resolution", "transferred_to", "closed_at"}


async def outcome_when(client: httpx.AsyncClient, token: str, complaint_id: str,
                       status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any]:
        body = (await client.get(f"/v1/complaints/{complaint_id}", headers=bearer(token))).json()
        assert body["outcome"]["status"] == status, body["outcome"]
        assert body["status"] == status
        outcome: dict[str, Any] = body["outcome"]
        return outcome

    return await eventually(reached, timeout=20, interval=0.05)


async def test_the_outcome_follows_the_case_to_its_closure(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        created = await client.post("/v1/complaints", json=complaint(),
                                    headers=bearer(tokens.partner))
        assert created.status_code == 201
        body = created.json()
        assert set(body["outcome"]) == OUTCOME_FIELDS
        assert body["outcome"]["status"] == "received"
        assert body["outcome"]["updated_at"] == body["received_at"]
        assert body["outcome"]["closed_at"] is None
        case_id = body["id"]
        await wait_case(client, tokens.assistant, case_id)
        await ok(client, tokens.assistant, case_id, "register")
        await ok(client, tokens.assistant, case_id, "start_examination", assignee="asisten.1")
        asked = await ok(client, tokens.assistant, case_id, "request_clarification",
                         note="Mohon penjelasan")
        waiting = await outcome_when(client, tokens.partner, case_id, "awaiting_agency")
        assert waiting["due_at"] == asked["due_at"]
        assert waiting["closure_reason"] is None

        await ok(client, tokens.liaison, case_id, "respond", note="Sudah diperbaiki",
                 resolution="resolved")
        closed = await ok(client, tokens.assistant, case_id, "close",
                          reason="resolved_by_agency", note="Selesai")
        final = await outcome_when(client, tokens.partner, case_id, "closed")
        assert final == {
            "status": "closed", "updated_at": closed["history"][-1]["at"], "due_at": None,
            "closure_stage": "examination", "closure_reason": "resolved_by_agency",
            "resolution": "resolved", "transferred_to": None,
            "closed_at": closed["history"][-1]["at"],
        }
        listed = (await client.get("/v1/complaints", headers=bearer(tokens.partner))).json()
        assert listed["items"][0]["outcome"] == final
        # Notes and assignees stay internal.
        assert "Selesai" not in str(final)
        assert "asisten.1" not in str(listed)


async def test_a_transfer_names_where_the_complaint_went(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case_id = await post_complaint(client, tokens)
        await wait_case(client, tokens.assistant, case_id)
        await ok(client, tokens.assistant, case_id, "transfer", transferred_to="Komnas HAM")
        outcome = await outcome_when(client, tokens.partner, case_id, "closed")
        assert outcome["transferred_to"] == "Komnas HAM"
        assert outcome["closure_reason"] == "transferred"
        assert outcome["closure_stage"] == "verification"


async def test_kinds_that_open_no_case_have_no_outcome(services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services) as client:
        created = await client.post("/v1/complaints", json=complaint(kind="consultation"),
                                    headers=bearer(token))
        assert created.json()["outcome"] is None
        fetched = await client.get(f"/v1/complaints/{created.json()['id']}",
                                   headers=bearer(token))
        assert fetched.json()["outcome"] is None


async def test_a_tracking_number_finds_a_complaint_within_the_callers_scope(
    services: BackingServices,
) -> None:
    mine = await services.token("partner", "posko-a")
    other = await services.token("partner", "posko-b")
    assistant = await services.token("assistant")
    async with running_app(services) as client:
        first = (await client.post("/v1/complaints", json=complaint(),
                                   headers=bearer(mine))).json()
        await client.post("/v1/complaints", json=complaint(), headers=bearer(mine))
        number = first["tracking_number"]
        for token in (mine, assistant):
            page = (await client.get("/v1/complaints", params={"tracking_number": number},
                                     headers=bearer(token))).json()
            assert [c["id"] for c in page["items"]] == [first["id"]]
            assert page["next_cursor"] is None
        for token, asked in ((other, number), (mine, "ADU-1999-000001")):
            page = await client.get("/v1/complaints", params={"tracking_number": asked},
                                    headers=bearer(token))
            assert page.status_code == 200
            assert page.json() == {"items": [], "next_cursor": None}
