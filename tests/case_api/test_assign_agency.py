"""``assign_agency``: a report an Open311 client filed without an agency (``unassigned``) is
given its agency by an assistant, during verification (an addition to API.md's table)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from shared.db import asyncpg_dsn
from tests.case_api.helpers import (
    AGENCY,
    OTHER_AGENCY,
    PATHS,
    Tokens,
    act,
    case_at,
    drive,
    get_case,
    ok,
    transitioned_events,
    wait_case,
)
from tests.intake_api.webhooks.receiver import receiving
from tests.intake_api.webhooks.test_delivery import FAST, subscribe, verified
from tests.support import BackingServices, bearer, eventually, running_app

FORM = {"service_code": "electricity", "address_string": "Jl. Jend. Sudirman, Pangkalpinang",
        "description": "Listrik rumah padam tiap malam sejak seminggu.",
        "first_name": "Siti", "last_name": "Aminah", "email": "siti@example.id"}
PLN = {"code": AGENCY, "name": "PT PLN (Persero) UIW Bangka Belitung"}
BPN = {"code": OTHER_AGENCY, "name": "Kantor Pertanahan Kota Pangkalpinang"}


async def post_unassigned(client: httpx.AsyncClient, tokens: Tokens) -> tuple[str, str]:
    """An Open311 report without ``attribute[agency]``: its tracking number and case id, once
    the case is open."""
    posted = await client.post("/open311/v2/requests.json",
                               data={**FORM, "api_key": tokens.partner})
    assert posted.status_code == 201, posted.text
    number = posted.json()[0]["service_request_id"]
    found = (await client.get(f"/v1/complaints?tracking_number={number}",
                              headers=bearer(tokens.partner))).json()["items"]
    case_id = str(found[0]["id"])
    await wait_case(client, tokens.assistant, case_id)
    return number, case_id


async def test_an_assistant_gives_an_unassigned_report_its_agency(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        number, case_id = await post_unassigned(client, tokens)
        before = (await client.get(f"/v1/cases/{case_id}", headers=bearer(tokens.assistant)))
        case = before.json()
        assert case["reported_agency"]["code"] == "unassigned"
        assert case["status"] == "received"
        assert "assign_agency" in case["allowed_actions"]
        # Not yet the agency's: its liaison does not see the case.
        hidden = await client.get(f"/v1/cases/{case_id}", headers=bearer(tokens.liaison))
        assert hidden.status_code == 404

        assigned = await act(client, tokens.assistant, case_id, "assign_agency",
                             if_match=case["version"], reported_agency=PLN,
                             note="Pemadaman listrik: PLN UIW Babel")
        assert assigned.status_code == 200, assigned.text
        body = assigned.json()
        assert body["reported_agency"] == PLN
        assert body["status"] == "received"
        assert body["version"] == case["version"] + 1
        assert assigned.headers["etag"] == f'"{body["version"]}"' != before.headers["etag"]
        assert "assign_agency" not in body["allowed_actions"]
        assert sorted(body["allowed_actions"]) == sorted(
            ["request_completion", "register", "reject", "transfer", "withdraw"])
        entry = body["history"][-1]
        assert (entry["action"], entry["from_status"], entry["to_status"]) == (
            "assign_agency", "received", "received")
        assert (entry["actor"], entry["role"]) == ("asisten.pvl.2", "assistant")
        assert entry["note"] == "Pemadaman listrik: PLN UIW Babel"
        assert entry["details"]["reported_agency"] == PLN
        again = await get_case(client, tokens.assistant, case_id)
        assert again["reported_agency"] == PLN
        assert again["history"] == body["history"]

        # The new agency's liaison sees it from now on; another agency's still does not.
        seen = await get_case(client, tokens.liaison, case_id)
        assert seen["reported_agency"]["code"] == AGENCY
        listed = (await client.get("/v1/cases", headers=bearer(tokens.liaison))).json()
        assert case_id in [c["id"] for c in listed["items"]]
        other = await client.get(f"/v1/cases/{case_id}", headers=bearer(tokens.other_liaison))
        assert other.status_code == 404

        [event] = [e for e in await transitioned_events(services.database_url, case_id)
                   if e["data"]["action"] == "assign_agency"]
        assert event["data"]["from_status"] == event["data"]["to_status"] == "received"
        assert event["data"]["reported_agency"] == PLN
        assert event["data"]["agency"] == AGENCY
        assert event["data"]["version"] == body["version"]

        # The partner's complaint and its Open311 request follow once the event is applied.
        async def followed() -> None:
            complaint = (await client.get(f"/v1/complaints/{case_id}",
                                          headers=bearer(tokens.partner))).json()
            assert complaint["reported_agency"] == PLN
            assert complaint["outcome"]["status"] == "received"
            request = (await client.get(f"/open311/v2/requests/{number}.json",
                                        params={"api_key": tokens.partner})).json()
            assert request[0]["agency_responsible"] == PLN["name"]
            assert request[0]["status"] == "open"

        await eventually(followed)
        agencies = (await client.get(f"/v1/agencies/{AGENCY}",
                                     headers=bearer(tokens.assistant))).json()
        assert (agencies["open_cases"], agencies["complaints"]) == (1, 1)
        left = (await client.get("/v1/agencies/unassigned",
                                 headers=bearer(tokens.assistant))).json()
        assert (left["open_cases"], left["complaints"]) == (0, 0)

        # The workflow goes on as for any case; the liaison of the agency answers.
        moved = await drive(client, tokens.assistant, case_id, PATHS["awaiting_agency"])
        assert moved is not None
        answered = await ok(client, tokens.liaison, case_id, "respond", note="Sudah diperbaiki",
                            resolution="resolved")
        assert answered["status"] == "agency_responded"


async def test_assign_agency_from_every_verification_status_keeps_status_and_due_date(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        for status in ("awaiting_completion", "registered"):
            _, case_id = await post_unassigned(client, tokens)
            case = await drive(client, tokens.assistant, case_id, PATHS[status])
            assert case is not None
            assert "assign_agency" in case["allowed_actions"]
            # An admin may take every action.
            assigned = await ok(client, tokens.admin, case_id, "assign_agency",
                                reported_agency=BPN)
            assert assigned["status"] == status
            assert assigned["due_at"] == case["due_at"]
            assert assigned["reported_agency"] == BPN
            assert sorted(assigned["allowed_actions"]) == sorted(
                a for a in case["allowed_actions"] if a != "assign_agency")
            assert assigned["history"][-1]["role"] == "admin"


async def test_assign_agency_is_refused_where_it_does_not_belong(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    # Nobody answers for ``unassigned``: a liaison of it would read every report filed so.
    with pytest.raises(ValueError, match="unassigned"):
        await services.token("liaison", "narahubung.unassigned", agency="unassigned")
    async with running_app(services) as client:
        # A case whose complaint named its agency: never listed, 409 with the table's actions.
        named = await case_at(client, tokens, "received")
        assert "assign_agency" not in named["allowed_actions"]
        refused = await act(client, tokens.assistant, named["id"], "assign_agency",
                            reported_agency=BPN)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert sorted(refused.json()["allowed_actions"]) == sorted(named["allowed_actions"])
        assert (await get_case(client, tokens.assistant, named["id"]))["version"] == \
            named["version"]

        _, case_id = await post_unassigned(client, tokens)
        case = await get_case(client, tokens.assistant, case_id)
        bad: list[tuple[dict[str, Any], str]] = [
            ({}, "/reported_agency"),
            ({"reported_agency": {"code": "PLN Babel", "name": "PLN"}}, "/reported_agency/code"),
            ({"reported_agency": {"code": "-pln", "name": "PLN"}}, "/reported_agency/code"),
            ({"reported_agency": {"code": "pln", "name": "   "}}, "/reported_agency/name"),
            ({"reported_agency": {"code": "pln", "name": "\u200b"}}, "/reported_agency/name"),
            ({"reported_agency": {"code": "pln"}}, "/reported_agency/name"),
            ({"reported_agency": {**PLN, "extra": 1}}, "/reported_agency/extra"),
            ({"reported_agency": {"code": "unassigned", "name": "Belum"}},
             "/reported_agency/code"),
        ]
        for fields, pointer in bad:
            response = await act(client, tokens.assistant, case_id, "assign_agency", **fields)
            assert response.status_code == 422, (fields, response.text)
            assert response.json()["errors"][0]["field"] == pointer, response.json()
        # ``reported_agency`` belongs to assign_agency only.
        other = await act(client, tokens.assistant, case_id, "register", reported_agency=PLN)
        assert other.status_code == 422
        assert other.json()["errors"][0]["field"] == "/reported_agency"

        partner = await act(client, tokens.partner, case_id, "assign_agency",
                            reported_agency=PLN)
        assert partner.status_code == 403
        analyst = await act(client, tokens.analyst, case_id, "assign_agency",
                            reported_agency=PLN)
        assert analyst.status_code == 403
        # A liaison of another agency does not see the case at all.
        outsider = await act(client, tokens.liaison, case_id, "assign_agency",
                             reported_agency=PLN)
        assert outsider.status_code == 404

        stale = await act(client, tokens.assistant, case_id, "assign_agency",
                          if_match=case["version"] + 1, reported_agency=PLN)
        assert stale.status_code == 412
        assert (await get_case(client, tokens.assistant, case_id))["version"] == case["version"]

        await ok(client, tokens.assistant, case_id, "assign_agency", if_match=case["version"],
                 reported_agency=PLN)
        twice = await act(client, tokens.assistant, case_id, "assign_agency",
                          reported_agency=BPN)
        assert twice.status_code == 409
        assert "assign_agency" not in twice.json()["allowed_actions"]

        # Past verification, a case filed unassigned can no longer be given one.
        _, late = await post_unassigned(client, tokens)
        await drive(client, tokens.assistant, late, PATHS["in_examination"])
        closed_door = await act(client, tokens.assistant, late, "assign_agency",
                                reported_agency=PLN)
        assert closed_door.status_code == 409
        assert "assign_agency" not in closed_door.json()["allowed_actions"]


async def test_the_figures_count_the_agency_given_and_nothing_else_moves(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        await case_at(client, tokens, "registered")
        _, case_id = await post_unassigned(client, tokens)
        analyst = bearer(tokens.analyst)

        async def summary(agencies: dict[str, int]) -> dict[str, Any]:
            async def settled() -> dict[str, Any]:
                body: dict[str, Any] = (await client.get("/v1/metrics/summary?period=2026",
                                                         headers=analyst)).json()
                assert body["received_by_agency"] == agencies
                # Both cases opened in the read model (the contact comes on its own log).
                assert nonzero(body["backlog_at_end"]) == {"received": 1, "registered": 1}
                return body
            return await eventually(settled)

        before = await summary({AGENCY: 1, "unassigned": 1})
        assignment = (await ok(client, tokens.assistant, case_id, "assign_agency",
                               reported_agency=BPN))["history"][-1]
        after = await summary({AGENCY: 1, OTHER_AGENCY: 1})
        # The newest event applied: the figures are current to the assignment.
        assert datetime.fromisoformat(after["as_of"]) == datetime.fromisoformat(
            assignment["at"]) > datetime.fromisoformat(before["as_of"])

        async def assigned_case_counted() -> dict[str, Any]:
            body: dict[str, Any] = (await client.get(
                "/v1/metrics/monthly?from=2026-01-01&to=2026-12-31&group_by=agency",
                headers=analyst)).json()
            groups = {row["group"] for row in body["rows"] if row["received"]}
            assert groups == {AGENCY, OTHER_AGENCY}
            return body
        await eventually(assigned_case_counted)
        # Not a step: every other figure stays as it was (as_of moves on with the event).
        changed = {k for k in before if before[k] != after[k]}
        assert changed <= {"received_by_agency", "as_of"}, changed
        assert nonzero(after["backlog_at_end"]) == {"received": 1, "registered": 1}
        assert after["registered"] == 1

        # The workflow goes on: the case's days to close count from its receipt as ever.
        await ok(client, tokens.assistant, case_id, "reject", reason="out_of_jurisdiction")
        async def closed_counted() -> dict[str, Any]:
            body: dict[str, Any] = (await client.get("/v1/metrics/summary?period=2026",
                                                     headers=analyst)).json()
            assert nonzero(body["closed_by_stage"]) == {"verification": 1}
            return body
        closed = await eventually(closed_counted)
        assert closed["median_days_to_close"] == {"verification": 0.0}
        assert nonzero(closed["backlog_at_end"]) == {"registered": 1}
        assert closed["received_by_agency"] == {AGENCY: 1, OTHER_AGENCY: 1}

        # BI's transitions list the assignment with the steps, every version of the case.
        owner = await asyncpg.connect(asyncpg_dsn(services.database_url))
        try:
            rows = await owner.fetch(
                "SELECT version, action, from_status, to_status, effective_at, agency_code, "
                "reason FROM metrics.bi_transitions WHERE case_id = $1 ORDER BY version",
                uuid.UUID(case_id))
        finally:
            await owner.close()
        assert [tuple(row.values()) for row in rows] == [
            (2, "assign_agency", "received", "received",
             datetime.fromisoformat(assignment["at"]), OTHER_AGENCY, None),
            (3, "reject", "received", "closed", rows[1]["effective_at"], OTHER_AGENCY,
             "out_of_jurisdiction")]


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in counts.items() if n}


async def test_the_partners_webhook_hears_of_the_assignment_as_a_status_change(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    with receiving() as hooks:
        async with running_app(services, **FAST) as client:
            subscription = await subscribe(client, tokens.partner, hooks.url,
                                           ["complaint.status_changed"])
            _, case_id = await post_unassigned(client, tokens)
            assigned = await ok(client, tokens.assistant, case_id, "assign_agency",
                                reported_agency=PLN)

            async def arrived() -> None:
                assert len(hooks.requests()) == 1

            await eventually(arrived)
            [body] = verified(hooks, subscription["secret"])
            assert body["type"] == "complaint.status_changed"
            assert body["data"]["id"] == case_id
            assert body["data"]["version"] == assigned["version"]
            assert body["data"]["outcome"]["status"] == "received"


async def test_the_assignment_reaches_the_new_agencys_liaison_webhooks(
    services: BackingServices,
) -> None:
    """The step that gives a case its agency is the first its liaisons hear of the case, and
    they hear the steps after it; another agency's liaison hears none. ``unassigned`` has no
    liaison to tell (no liaison token may be made for it)."""
    tokens = await Tokens.create(services)
    with receiving() as pln_hooks, receiving() as bpn_hooks:
        async with running_app(services, **FAST) as client:
            events = ["complaint.status_changed", "case.awaiting_agency"]
            pln = await subscribe(client, tokens.liaison, pln_hooks.url, events)
            await subscribe(client, tokens.other_liaison, bpn_hooks.url, events)
            _, case_id = await post_unassigned(client, tokens)
            assigned = await ok(client, tokens.assistant, case_id, "assign_agency",
                                reported_agency=PLN)

            async def assignment_arrived() -> None:
                assert len(pln_hooks.requests()) == 1

            await eventually(assignment_arrived)
            [body] = verified(pln_hooks, pln["secret"])
            assert body["type"] == "complaint.status_changed"
            assert body["data"]["id"] == case_id
            assert body["data"]["version"] == assigned["version"]
            assert body["data"]["outcome"]["status"] == "received"

            asked = await drive(client, tokens.assistant, case_id, PATHS["awaiting_agency"])
            assert asked is not None

            async def clarification_arrived() -> None:
                assert len(pln_hooks.bodies("case.awaiting_agency")) == 1

            await eventually(clarification_arrived)
            [awaiting] = pln_hooks.bodies("case.awaiting_agency")
            assert awaiting["data"]["agency"] == AGENCY
            assert awaiting["data"]["version"] == asked["version"]
            changes = sorted(b["data"]["version"]
                             for b in pln_hooks.bodies("complaint.status_changed"))
            assert changes == list(range(assigned["version"], asked["version"] + 1))
            assert bpn_hooks.requests() == []
