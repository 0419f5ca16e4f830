"""The HTTP edge of the case service: answers, roles, ETags, back-dating, lists, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from tests.case_api.helpers import (
    AGENCY,
    OTHER_AGENCY,
    Tokens,
    act,
    case_at,
    cases_at,
    get_case,
    ok,
    open_case,
    open_cases,
    parse_time,
    transitioned_events,
)
from tests.support import BackingServices, bearer, query, running_app

PROBLEM_JSON = "application/problem+json"


async def test_an_action_not_allowed_now_is_409_with_allowed_actions(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await case_at(client, tokens, "awaiting_completion")
        response = await act(client, tokens.assistant, case["id"], "register")
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM_JSON
        problem = response.json()
        assert problem["status"] == 409
        assert problem["type"]
        assert problem["title"]
        assert problem["detail"]
        assert sorted(problem["allowed_actions"]) == ["complete", "reject", "withdraw"]
        # The role's own view: a liaison is offered only what it may take.
        examined = await case_at(client, tokens, "in_examination")
        liaison = await act(client, tokens.liaison, examined["id"], "respond", note="x",
                            resolution="resolved")
        assert liaison.status_code == 409
        assert liaison.json()["allowed_actions"] == []
        unchanged = await get_case(client, tokens.assistant, examined["id"])
        assert unchanged["version"] == examined["version"]


async def test_if_match_and_etag(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await open_case(client, tokens)
        cid = case["id"]
        got = await client.get(f"/v1/cases/{cid}", headers=bearer(tokens.assistant))
        assert got.headers["etag"] == '"1"'
        registered = await act(client, tokens.assistant, cid, "register", if_match=1)
        assert registered.status_code == 200
        assert registered.headers["etag"] == '"2"'
        assert registered.json()["version"] == 2

        stale = await act(client, tokens.assistant, cid, "start_examination", assignee="a",
                          if_match=1)
        assert stale.status_code == 412
        assert stale.headers["content-type"] == PROBLEM_JSON
        assert stale.json()["status"] == 412
        # Stale wins over "not allowed now": the client's view is out of date.
        stale_and_wrong = await act(client, tokens.assistant, cid, "complete", note="x",
                                    if_match=1)
        assert stale_and_wrong.status_code == 412
        assert (await get_case(client, tokens.assistant, cid))["version"] == 2

        # RFC 9110: strong comparison, so a weak tag never matches; any tag of a list may.
        weak = await act(client, tokens.assistant, cid, "start_examination", assignee="a",
                         if_match='W/"2"')
        assert weak.status_code == 412
        listed = await act(client, tokens.assistant, cid, "start_examination", assignee="a",
                           if_match='W/"2", "1" ,"2"')
        assert listed.status_code == 200
        assert listed.headers["etag"] == '"3"'
        anything = await act(client, tokens.assistant, cid, "request_clarification",
                             note="?", if_match="*")
        assert anything.status_code == 200
        for garbage in ("yesterday", "4", '"4', '"4" "4"', ","):
            refused = await act(client, tokens.assistant, cid, "withdraw", if_match=garbage)
            assert refused.status_code == 422, garbage
            assert refused.json()["errors"][0]["field"] == "/header/If-Match"
        assert (await get_case(client, tokens.assistant, cid))["version"] == 4


async def test_missing_and_bad_fields_are_named(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        at = {s: (await case_at(client, tokens, s))["id"] for s in
              ("received", "awaiting_completion", "registered", "in_examination",
               "awaiting_agency", "agency_responded")}
        attempts: list[tuple[str, dict[str, Any], str]] = [
            ("received", {"action": "request_completion"}, "/note"),
            ("received", {"action": "request_completion", "note": "   "}, "/note"),
            # API.md "Under load and abuse": zero-width-only text where text is required.
            ("received", {"action": "request_completion", "note": "\u200b\u200c\ufeff"},
             "/note"),
            ("awaiting_completion", {"action": "complete", "note": "\u2060"}, "/note"),
            ("received", {"action": "transfer", "transferred_to": "\u200b"}, "/transferred_to"),
            ("registered", {"action": "start_examination", "assignee": "\u200d "}, "/assignee"),
            ("awaiting_completion", {"action": "complete"}, "/note"),
            ("received", {"action": "reject"}, "/reason"),
            ("received", {"action": "reject", "reason": "bored"}, "/reason"),
            ("received", {"action": "transfer"}, "/transferred_to"),
            ("registered", {"action": "start_examination"}, "/assignee"),
            ("registered", {"action": "start_examination", "assignee": ""}, "/assignee"),
            ("in_examination", {"action": "request_clarification"}, "/note"),
            ("awaiting_agency", {"action": "respond", "resolution": "resolved"}, "/note"),
            ("awaiting_agency", {"action": "respond", "note": "x"}, "/resolution"),
            ("awaiting_agency", {"action": "respond", "note": "x", "resolution": "maybe"},
             "/resolution"),
            ("in_examination", {"action": "find_maladministration"}, "/maladministration"),
            ("in_examination", {"action": "find_maladministration",
                                "maladministration": "rudeness"}, "/maladministration"),
            ("agency_responded", {"action": "close"}, "/reason"),
            ("received", {"action": "register", "assignee": "a"}, "/assignee"),
            ("received", {"action": "withdraw", "reason": "withdrawn"}, "/reason"),
            ("received", {"action": "fly"}, "/action"),
            ("received", {"note": "no action"}, "/action"),
            ("received", {"action": "withdraw", "surprise": 1}, "/surprise"),
            ("received", {"action": "expire"}, "/action"),
            ("received", {"action": "withdraw", "note": "a\u0000b"}, "/note"),
            ("received", {"action": "request_completion", "note": "x",
                          "due_at": "9999-12-31T23:59:59-12:00"}, "/due_at"),
            ("received", {"action": "request_completion", "note": "x",
                          "effective_at": "9999-12-31T23:59:59-12:00"}, "/effective_at"),
        ]
        for status, body, field in attempts:
            response = await client.post(f"/v1/cases/{at[status]}/transitions", json=body,
                                          headers=bearer(tokens.assistant))
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.json()["errors"][0]["field"] == field, (body, response.text)
        for cid in at.values():
            case = await get_case(client, tokens.assistant, cid)
            assert case["status"] != "closed"
        # An optional note that shows nothing is no note, as a blank reporter name is no name.
        withdrawn = await ok(client, tokens.assistant, at["received"], "withdraw",
                             note="\u200b\ufeff")
        assert withdrawn["history"][-1]["note"] is None

        for raw in (b'{"action": ', b"[]", b'"withdraw"'):
            response = await client.post(
                f"/v1/cases/{at['received']}/transitions", content=raw,
                headers={**bearer(tokens.assistant), "content-type": "application/json"})
            assert response.status_code in (400, 422), raw
        not_json = await client.post(
            f"/v1/cases/{at['received']}/transitions", content=b"action=withdraw",
            headers={**bearer(tokens.assistant), "content-type": "text/plain"})
        assert not_json.status_code == 415


async def test_roles_that_may_not_act_get_403(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        received, waiting = await asyncio.gather(case_at(client, tokens, "received"),
                                                 case_at(client, tokens, "awaiting_agency"))
        for token in (tokens.partner, tokens.analyst):
            for cid, body in ((received["id"], {"action": "register"}),
                              (waiting["id"], {"action": "respond", "note": "x",
                                               "resolution": "resolved"})):
                response = await client.post(f"/v1/cases/{cid}/transitions", json=body,
                                             headers=bearer(token))
                assert response.status_code == 403, response.text
                assert response.headers["content-type"] == PROBLEM_JSON
        # A partner may not read cases at all; an analyst may, without personal data.
        assert (await client.get(f"/v1/cases/{received['id']}",
                                 headers=bearer(tokens.partner))).status_code == 403
        assert (await client.get("/v1/cases", headers=bearer(tokens.partner))).status_code == 403
        seen = await get_case(client, tokens.analyst, received["id"])
        assert seen["allowed_actions"] == []
        assert "name" not in (seen["reporter"] or {})
        # Without a token, or with an unknown one: 401.
        assert (await client.get("/v1/cases")).status_code == 401
        unknown = await act(client, "adu_unknown", received["id"], "register")
        assert unknown.status_code == 401
        # Nothing moved.
        assert (await get_case(client, tokens.assistant, received["id"]))["version"] == 1
        assert (await get_case(client, tokens.assistant, waiting["id"]))["version"] == \
            waiting["version"]


async def test_an_admin_may_take_every_action(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await open_case(client, tokens)
        cid = case["id"]
        adm = tokens.admin
        for body in ({"action": "request_completion", "note": "x"},
                     {"action": "complete", "note": "y"},
                     {"action": "register", "complexity": "medium"},
                     {"action": "start_examination", "assignee": "a"},
                     {"action": "request_clarification", "note": "?"},
                     {"action": "respond", "note": "!", "resolution": "resolved"},
                     {"action": "find_maladministration", "maladministration": "partiality"},
                     {"action": "close", "reason": "corrective_action_completed"}):
            fields = dict(body)
            done = await ok(client, adm, cid, fields.pop("action"), **fields)
        assert done["status"] == "closed"
        assert {(h["actor"], h["role"]) for h in done["history"]} == {("admin.kantor", "admin")}
        fresh = await open_case(client, tokens)
        assert sorted((await get_case(client, adm, fresh["id"]))["allowed_actions"]) == sorted(
            ["request_completion", "register", "reject", "transfer", "withdraw"])
        rejected = await ok(client, adm, fresh["id"], "reject", reason="in_court")
        assert rejected["closure_stage"] == "verification"


async def test_effective_at_is_for_admins_within_bounds(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    received = datetime(2022, 3, 3, 2, 15, tzinfo=UTC)
    async with running_app(services, expiry_interval_seconds=3600) as client:
        case = await open_case(client, tokens, received_at="2022-03-03T09:15:00+07:00")
        cid = case["id"]
        assert parse_time(case["received_at"]) == received

        by_assistant = await act(client, tokens.assistant, cid, "register",
                                 effective_at="2022-03-04T09:00:00+07:00")
        assert by_assistant.status_code == 422
        assert by_assistant.json()["errors"][0]["field"] == "/effective_at"
        before_receipt = await act(client, tokens.admin, cid, "register",
                                   effective_at="2022-03-03T09:14:59+07:00")
        assert before_receipt.status_code == 422
        assert before_receipt.json()["errors"][0]["field"] == "/effective_at"
        future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        in_future = await act(client, tokens.admin, cid, "register", effective_at=future)
        assert in_future.status_code == 422
        assert in_future.json()["errors"][0]["field"] == "/effective_at"
        naive = await act(client, tokens.admin, cid, "register",
                          effective_at="2022-03-04T09:00:00")
        assert naive.status_code == 422

        at_receipt = await ok(client, tokens.admin, cid, "register",
                              effective_at="2022-03-03T09:15:00+07:00")
        assert at_receipt["history"][-1]["at"] == "2022-03-03T02:15:00Z"
        later = await ok(client, tokens.admin, cid, "start_examination", assignee="a",
                         effective_at="2022-03-10T09:00:00+07:00")
        assert later["history"][-1]["at"] == "2022-03-10T02:00:00Z"
        before_last = await act(client, tokens.admin, cid, "request_clarification", note="?",
                                effective_at="2022-03-09T09:00:00+07:00")
        assert before_last.status_code == 422
        assert before_last.json()["errors"][0]["field"] == "/effective_at"
        same_time = await ok(client, tokens.admin, cid, "request_clarification", note="?",
                             effective_at="2022-03-10T02:00:00Z")
        assert same_time["history"][-1]["at"] == "2022-03-10T02:00:00Z"

        # Without effective_at the server's clock is used.
        now = await ok(client, tokens.assistant, cid, "respond", note="!",
                       resolution="resolved")
        assert parse_time(now["history"][-1]["at"]) > datetime.now(UTC) - timedelta(minutes=1)
        assert (await transitioned_events(services.database_url, cid))[1]["data"]["at"] \
            .startswith("2022-03-10T02:00:00")


async def test_unknown_and_malformed_case_ids(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        missing = await client.get(f"/v1/cases/{uuid.uuid4()}", headers=bearer(tokens.assistant))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM_JSON
        missing_post = await act(client, tokens.assistant, str(uuid.uuid4()), "withdraw")
        assert missing_post.status_code == 404
        # An id that cannot exist is simply not found.
        malformed = await client.get("/v1/cases/not-a-uuid", headers=bearer(tokens.assistant))
        assert malformed.status_code == 404
        assert malformed.headers["content-type"] == PROBLEM_JSON


async def test_list_filters_and_pages(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        pln = await cases_at(client, tokens, "in_examination", 3)
        other = await open_cases(client, tokens, 2,
                                 reported_agency={"code": OTHER_AGENCY, "name": "BPN"})
        await ok(client, tokens.assistant, pln[0]["id"], "withdraw")
        headers = bearer(tokens.assistant)

        async def ids(query_string: str) -> list[str]:
            response = await client.get(f"/v1/cases{query_string}", headers=headers)
            assert response.status_code == 200, response.text
            return [c["id"] for c in response.json()["items"]]

        newest_first = [c["id"] for c in reversed(pln + other)]
        assert await ids("") == newest_first
        assert await ids(f"?agency={OTHER_AGENCY}") == [c["id"] for c in reversed(other)]
        assert await ids(f"?agency={AGENCY}&status=in_examination") == [pln[2]["id"],
                                                                        pln[1]["id"]]
        assert await ids("?status=closed") == [pln[0]["id"]]
        assert await ids("?assignee=asisten.pemeriksaan.1&status=in_examination") == [
            pln[2]["id"], pln[1]["id"]]
        assert await ids("?assignee=nobody") == []

        collected: list[str] = []
        cursor = None
        for _ in range(10):
            url = "/v1/cases?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await client.get(url, headers=headers)).json()
            collected += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert collected == newest_first

        # API.md gives one shape for a case, in a list as on its own, history included.
        items = (await client.get("/v1/cases?limit=3", headers=headers)).json()["items"]
        assert len(items) == 3
        for item in items:
            assert item == await get_case(client, tokens.assistant, item["id"])
            assert set(item) >= {"id", "tracking_number", "kind", "status", "version",
                                 "channel", "substance", "reported_agency", "reporter",
                                 "summary", "received_at", "assignee", "due_at", "overdue",
                                 "closure_stage", "closure_reason", "maladministration",
                                 "complexity", "resolution", "transferred_to",
                                 "allowed_actions", "history"}
        # The page's histories come in one query, not one per case.
        statements: list[str] = []
        engine = client.app.state.database.engine.sync_engine  # type: ignore[attr-defined]

        def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", seen)
        try:
            listed = await client.get("/v1/cases?limit=5", headers=headers)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert len(listed.json()["items"]) == 5
        assert sum("cases.transitions" in s for s in statements) == 1, statements
        withdrawn = next(c for c in (await client.get("/v1/cases?status=closed",
                                                      headers=headers)).json()["items"])
        assert [h["action"] for h in withdrawn["history"]] == [
            "register", "start_examination", "withdraw"]
        for bad in ("?limit=0", "?limit=201", "?status=sleeping", "?overdue=perhaps",
                    "?cursor=%%%"):
            response = await client.get(f"/v1/cases{bad}", headers=headers)
            assert response.status_code in (400, 422), (bad, response.status_code)


async def test_agencies_count_open_cases(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        pln = await open_cases(client, tokens, 3)
        await open_cases(client, tokens, 1, reported_agency={"code": OTHER_AGENCY, "name": "BPN"})
        await ok(client, tokens.assistant, pln[0]["id"], "withdraw")
        agencies = (await client.get("/v1/agencies", headers=bearer(tokens.assistant))).json()
        counts = {a["code"]: (a["open_cases"], a["total_cases"]) for a in agencies["items"]}
        assert counts == {AGENCY: (2, 3), OTHER_AGENCY: (1, 1)}
        one = await client.get(f"/v1/agencies/{AGENCY}", headers=bearer(tokens.liaison))
        assert one.json()["open_cases"] == 2
        hidden = await client.get(f"/v1/agencies/{OTHER_AGENCY}", headers=bearer(tokens.liaison))
        assert hidden.status_code == 404
        mine = (await client.get("/v1/agencies", headers=bearer(tokens.liaison))).json()
        assert [a["code"] for a in mine["items"]] == [AGENCY]


async def test_twenty_simultaneous_transitions_from_one_version(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    bodies: list[dict[str, Any]] = [
        {"action": "register"}, {"action": "request_completion", "note": "x"},
        {"action": "reject", "reason": "duplicate"}, {"action": "withdraw"},
        {"action": "transfer", "transferred_to": "Komnas HAM"},
    ] * 4
    async with running_app(services) as client:
        case = await open_case(client, tokens)
        cid = case["id"]

        async def attempt(body: dict[str, Any], if_match: int | None) -> int:
            headers = bearer(tokens.assistant)
            if if_match is not None:
                headers["If-Match"] = f'"{if_match}"'
            response = await client.post(f"/v1/cases/{cid}/transitions", json=body,
                                         headers=headers)
            return response.status_code

        codes = await asyncio.gather(*(attempt(b, 1) for b in bodies))
        assert sorted(codes).count(200) == 1, codes
        assert set(codes) <= {200, 409, 412}, codes
        after = await get_case(client, tokens.assistant, cid)
        assert after["version"] == 2
        assert len(after["history"]) == 1
        events = await transitioned_events(services.database_url, cid)
        assert len(events) == 1
        assert events[0]["data"]["action"] == after["history"][0]["action"]

        # Without If-Match the row lock decides: every action here closes the case, so after the
        # first one none of the others is allowed any more.
        examined = await case_at(client, tokens, "registered")
        second: list[dict[str, Any]] = (
            [{"action": "transfer", "transferred_to": f"Instansi {i}"} for i in range(10)]
            + [{"action": "withdraw", "note": f"{i}"} for i in range(10)])
        cid = examined["id"]
        statuses = await asyncio.gather(*(attempt(b, None) for b in second))
        assert statuses.count(200) == 1, statuses
        assert set(statuses) == {200, 409}, statuses
        after = await get_case(client, tokens.assistant, cid)
        assert len(after["history"]) == 2
        rows = await query(services.database_url,
                           "SELECT count(*) AS n FROM cases.transitions WHERE case_id = $1",
                           uuid.UUID(cid))
        assert rows[0]["n"] == 2
        assert len(await transitioned_events(services.database_url, cid)) == 2
