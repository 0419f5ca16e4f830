"""Liaison officers: their agency's cases only, respond only, no confidential reporter."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.case_api.helpers import (
    AGENCY,
    OTHER_AGENCY,
    Tokens,
    act,
    case_at,
    get_case,
    ok,
    open_case,
)
from tests.support import BackingServices, bearer, running_app

OTHER = {"code": OTHER_AGENCY, "name": "Kantor Pertanahan Kota Pangkalpinang"}
CONFIDENTIAL = {"name": "Rahasia", "email": "r@example.id", "phone": "+62812",
                "identity_number": "1971000000000002", "address": "Sungailiat",
                "confidential": True}


async def test_a_liaison_sees_only_its_agencys_cases(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        mine = [await open_case(client, tokens) for _ in range(2)]
        theirs = [await open_case(client, tokens, reported_agency=OTHER) for _ in range(2)]
        headers = bearer(tokens.liaison)

        listed = (await client.get("/v1/cases", headers=headers)).json()
        assert [c["id"] for c in listed["items"]] == [mine[1]["id"], mine[0]["id"]]
        assert all(c["reported_agency"]["code"] == AGENCY for c in listed["items"])
        filtered = await client.get(f"/v1/cases?agency={OTHER_AGENCY}", headers=headers)
        assert filtered.status_code == 200
        assert filtered.json()["items"] == []
        own_filter = (await client.get(f"/v1/cases?agency={AGENCY}&limit=1",
                                       headers=headers)).json()
        assert [c["id"] for c in own_filter["items"]] == [mine[1]["id"]]
        rest = (await client.get(f"/v1/cases?limit=1&cursor={own_filter['next_cursor']}",
                                 headers=headers)).json()
        assert [c["id"] for c in rest["items"]] == [mine[0]["id"]]
        assert rest["next_cursor"] is None

        for case in mine:
            assert (await get_case(client, tokens.liaison, case["id"]))["id"] == case["id"]
        for case in theirs:
            hidden = await client.get(f"/v1/cases/{case['id']}", headers=headers)
            assert hidden.status_code == 404
            assert "etag" not in hidden.headers
        other = (await client.get("/v1/cases", headers=bearer(tokens.other_liaison))).json()
        assert [c["id"] for c in other["items"]] == [theirs[1]["id"], theirs[0]["id"]]
        # The assistant sees all four.
        everything = (await client.get("/v1/cases", headers=bearer(tokens.assistant))).json()
        assert len(everything["items"]) == 4


async def test_a_liaison_may_only_respond(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    # Each action where it would be allowed, so the 403 is about the role, not the status.
    where: list[tuple[str, dict[str, Any]]] = [
        ("received", {"action": "request_completion", "note": "x"}),
        ("awaiting_completion", {"action": "complete", "note": "x"}),
        ("received", {"action": "register"}),
        ("received", {"action": "reject", "reason": "duplicate"}),
        ("registered", {"action": "transfer", "transferred_to": "X"}),
        ("registered", {"action": "start_examination", "assignee": "a"}),
        ("in_examination", {"action": "request_clarification", "note": "x"}),
        ("agency_responded", {"action": "find_maladministration",
                              "maladministration": "undue_delay"}),
        ("agency_responded", {"action": "close", "reason": "resolved_by_agency"}),
        ("awaiting_agency", {"action": "withdraw"}),
    ]
    async with running_app(services) as client:
        statuses = sorted({s for s, _ in where} | {"corrective_action"})
        cases = dict(zip(statuses, await asyncio.gather(
            *(case_at(client, tokens, s) for s in statuses)), strict=True))
        for status, body in where:
            cid = cases[status]["id"]
            response = await client.post(f"/v1/cases/{cid}/transitions", json=body,
                                         headers=bearer(tokens.liaison))
            assert response.status_code == 403, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert (await get_case(client, tokens.assistant, cid))["status"] == status

        for status, case in cases.items():
            seen = await get_case(client, tokens.liaison, case["id"])
            expected = ["respond"] if status in ("awaiting_agency", "corrective_action") else []
            assert seen["allowed_actions"] == expected, status

        missing = await act(client, tokens.liaison, cases["awaiting_agency"]["id"], "respond",
                            note="Sudah")
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "/resolution"
        answered = await ok(client, tokens.liaison, cases["awaiting_agency"]["id"], "respond",
                            note="Sudah ditangani", resolution="resolved")
        assert answered["status"] == "agency_responded"
        entry = answered["history"][-1]
        assert (entry["actor"], entry["role"], entry["note"]) == (
            "narahubung.pln", "liaison", "Sudah ditangani")
        assert answered["allowed_actions"] == []
        corrected = await ok(client, tokens.liaison, cases["corrective_action"]["id"], "respond",
                             note="Tindakan korektif selesai", resolution="resolved")
        assert corrected["status"] == "agency_responded"
        late = await act(client, tokens.liaison, cases["in_examination"]["id"], "respond",
                         note="x", resolution="resolved")
        assert late.status_code == 409
        assert late.json()["allowed_actions"] == []


async def test_another_agencys_liaison_gets_404(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await case_at(client, tokens, "awaiting_agency")
        cid = case["id"]
        for body in ({"action": "respond", "note": "x", "resolution": "resolved"},
                     {"action": "withdraw"}, {"action": "register"}):
            response = await client.post(f"/v1/cases/{cid}/transitions", json=body,
                                         headers=bearer(tokens.other_liaison))
            assert response.status_code == 404, (body, response.text)
        stale = await act(client, tokens.other_liaison, cid, "respond", note="x",
                          resolution="resolved", if_match=1)
        assert stale.status_code == 404
        assert (await client.get(f"/v1/cases/{cid}",
                                 headers=bearer(tokens.other_liaison))).status_code == 404
        assert (await get_case(client, tokens.assistant, cid))["version"] == case["version"]


async def test_a_confidential_reporter_is_hidden_from_liaisons(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        secret = await open_case(client, tokens, reporter=CONFIDENTIAL)
        plain = await open_case(client, tokens)
        await ok(client, tokens.assistant, secret["id"], "register")
        await ok(client, tokens.assistant, secret["id"], "start_examination", assignee="a")
        await ok(client, tokens.assistant, secret["id"], "request_clarification", note="?")

        assert secret["reporter"] == CONFIDENTIAL  # the assistant sees everything
        single = await get_case(client, tokens.liaison, secret["id"])
        assert single["reporter"] == {"confidential": True}
        listed = (await client.get("/v1/cases", headers=bearer(tokens.liaison))).json()
        by_id = {c["id"]: c for c in listed["items"]}
        assert by_id[secret["id"]]["reporter"] == {"confidential": True}
        assert by_id[plain["id"]]["reporter"]["name"] == "Siti Aminah"
        assert by_id[secret["id"]] == await get_case(client, tokens.liaison, secret["id"])
        listed_text = (await client.get("/v1/cases", headers=bearer(tokens.liaison))).text
        for value in ("Rahasia", "r@example.id", "+62812", "1971000000000002", "Sungailiat"):
            assert value not in listed_text
        assert (await get_case(client, tokens.liaison, plain["id"]))["reporter"] == \
            plain["reporter"]
        # The answer to its own transition does not give it away either.
        answered = await ok(client, tokens.liaison, secret["id"], "respond", note="!",
                            resolution="explained")
        assert answered["reporter"] == {"confidential": True}
        text = (await client.get(f"/v1/cases/{secret['id']}",
                                 headers=bearer(tokens.liaison))).text
        for value in ("Rahasia", "r@example.id", "+62812", "1971000000000002", "Sungailiat"):
            assert value not in text
        assert (await get_case(client, tokens.assistant, secret["id"]))["reporter"] == \
            CONFIDENTIAL



async def test_a_liaison_reads_the_complaints_facts_but_not_a_confidential_reporter(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await open_case(client, tokens, reporter=CONFIDENTIAL,
                               description="Listrik padam tiga kali seminggu di RT 03.",
                               location={"regency": "Bangka", "place": "Desa Kimak"},
                               incident_date="2022-02-27", reported_to_agency_first=True)
        for seen in [await get_case(client, tokens.liaison, case["id"]),
                     (await client.get("/v1/cases", headers=bearer(tokens.liaison))
                      ).json()["items"][0]]:
            assert seen["description"] == "Listrik padam tiga kali seminggu di RT 03."
            assert seen["location"] == {"regency": "Bangka", "place": "Desa Kimak"}
            assert seen["incident_date"] == "2022-02-27"
            assert seen["reported_to_agency_first"] is True
            assert seen["reporter"] == {"confidential": True}
        analyst = await get_case(client, tokens.analyst, case["id"])
        assert analyst["description"] is None
        assert analyst["location"] is None
        assert analyst["summary"] is None


async def test_an_analyst_reads_a_case_without_its_free_text(services: BackingServices) -> None:
    """The summary and the notes written on a case may name the reporter, as the account
    may: an analyst reads the case's course, in a list as on its own, without them."""
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await open_case(client, tokens, summary="Bu Siti Aminah di RT 03 tanpa listrik")
        await ok(client, tokens.assistant, case["id"], "request_completion",
                 note="Hubungi Bu Siti di 0811000 untuk KTP")
        await ok(client, tokens.assistant, case["id"], "complete", note="KTP Siti diterima")
        seen = await get_case(client, tokens.assistant, case["id"])
        assert seen["summary"] == "Bu Siti Aminah di RT 03 tanpa listrik"
        assert [h["note"] for h in seen["history"]] == [
            "Hubungi Bu Siti di 0811000 untuk KTP", "KTP Siti diterima"]
        listed = (await client.get("/v1/cases", headers=bearer(tokens.analyst))).json()
        for read in (await get_case(client, tokens.analyst, case["id"]), *listed["items"]):
            assert "Siti" not in json.dumps(read), read
            assert read["summary"] is None
            assert [h["action"] for h in read["history"]] == ["request_completion", "complete"]
            assert [h["note"] for h in read["history"]] == [None, None]
