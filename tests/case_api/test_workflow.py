"""Every action of the workflow table (API.md, "Cases") against the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.case_api.helpers import (
    AGENCY,
    OPEN_STATUSES,
    Tokens,
    act,
    case_at,
    cases_at,
    due_after,
    get_case,
    ok,
    open_case,
    parse_time,
    transitioned_events,
)
from tests.support import BackingServices, bearer, running_app

REJECT_REASONS = ["incomplete", "not_reported_to_agency", "out_of_jurisdiction", "in_court",
                  "expired", "duplicate", "already_resolved"]
EXAMINATION_CLOSE = ["resolved_by_agency", "no_maladministration", "examination_stopped"]
RESOLUTION_CLOSE = ["corrective_action_completed", "recommendation_issued"]
ALL_REASONS = [*REJECT_REASONS, *EXAMINATION_CLOSE, *RESOLUTION_CLOSE, "transferred",
               "withdrawn"]
STAGE = {"received": "verification", "awaiting_completion": "verification",
         "registered": "verification", "in_examination": "examination",
         "awaiting_agency": "examination", "agency_responded": "examination",
         "corrective_action": "resolution"}


def last(case: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = case["history"][-1]
    return entry


async def test_a_report_through_every_examination_action(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await open_case(client, tokens)
        cid = case["id"]
        assert case["status"] == "received"
        assert case["version"] == 1
        assert case["kind"] == "report"
        assert case["reported_agency"]["code"] == AGENCY
        assert case["history"] == []
        assert case["closure_stage"] is None
        assert case["closure_reason"] is None
        assert case["maladministration"] is None
        assert case["due_at"] is None
        assert case["overdue"] is False
        assert sorted(case["allowed_actions"]) == sorted(
            ["request_completion", "register", "reject", "transfer", "withdraw"])

        a = tokens.assistant
        case = await ok(client, a, cid, "request_completion", note="Lengkapi KTP")
        assert case["status"] == "awaiting_completion"
        assert case["version"] == 2
        assert parse_time(case["due_at"]) == due_after(parse_time(last(case)["at"]), 30)
        assert sorted(case["allowed_actions"]) == ["complete", "reject", "withdraw"]

        case = await ok(client, a, cid, "complete", note="KTP diterima")
        assert (case["status"], case["due_at"]) == ("received", None)

        case = await ok(client, a, cid, "register", complexity="heavy")
        assert (case["status"], case["complexity"]) == ("registered", "heavy")
        assert sorted(case["allowed_actions"]) == ["start_examination", "transfer", "withdraw"]

        case = await ok(client, a, cid, "start_examination", assignee="asisten.pemeriksaan.1")
        assert (case["status"], case["assignee"]) == ("in_examination", "asisten.pemeriksaan.1")

        case = await ok(client, a, cid, "request_clarification", note="Mohon klarifikasi")
        assert case["status"] == "awaiting_agency"
        assert parse_time(case["due_at"]) == due_after(parse_time(last(case)["at"]), 14)

        case = await ok(client, tokens.liaison, cid, "respond", note="Jadwal padam diumumkan",
                        resolution="explained")
        assert (case["status"], case["resolution"], case["due_at"]) == (
            "agency_responded", "explained", None)

        case = await ok(client, a, cid, "request_clarification", note="Kurang jelas")
        case = await ok(client, a, cid, "respond", note="Dijawab lewat telepon",
                        resolution="disputed")
        assert (case["status"], last(case)["role"]) == ("agency_responded", "assistant")

        case = await ok(client, a, cid, "find_maladministration",
                        maladministration="undue_delay")
        assert (case["status"], case["maladministration"]) == ("corrective_action",
                                                               "undue_delay")
        assert parse_time(case["due_at"]) == due_after(parse_time(last(case)["at"]), 30)

        case = await ok(client, tokens.liaison, cid, "respond", note="Tindakan korektif",
                        resolution="resolved")
        assert case["status"] == "agency_responded"
        case = await ok(client, a, cid, "find_maladministration",
                        maladministration="not_providing_service")
        case = await ok(client, a, cid, "close", reason="recommendation_issued",
                        note="Rekomendasi diterbitkan")
        assert case["status"] == "closed"
        assert case["closure_stage"] == "resolution"
        assert case["closure_reason"] == "recommendation_issued"
        assert case["maladministration"] == "not_providing_service"
        assert case["due_at"] is None
        assert case["overdue"] is False
        assert case["allowed_actions"] == []

        fetched = await get_case(client, a, cid)
        assert fetched == case
        actions = [h["action"] for h in fetched["history"]]
        assert actions == ["request_completion", "complete", "register", "start_examination",
                           "request_clarification", "respond", "request_clarification",
                           "respond", "find_maladministration", "respond",
                           "find_maladministration", "close"]
        assert fetched["version"] == 1 + len(actions)


async def test_history_records_every_transition(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await case_at(client, tokens, "awaiting_agency")
        cid = case["id"]
        await ok(client, tokens.liaison, cid, "respond", note="Sudah", resolution="resolved")
        closed = await ok(client, tokens.assistant, cid, "close", reason="resolved_by_agency",
                          note="Selesai")
        history = closed["history"]
        assert [(h["action"], h["from_status"], h["to_status"]) for h in history] == [
            ("register", "received", "registered"),
            ("start_examination", "registered", "in_examination"),
            ("request_clarification", "in_examination", "awaiting_agency"),
            ("respond", "awaiting_agency", "agency_responded"),
            ("close", "agency_responded", "closed"),
        ]
        for entry in history:
            assert set(entry) >= {"action", "from_status", "to_status", "actor", "role", "at",
                                  "note", "reason"}
            assert entry["at"].endswith("Z")
        assert [(h["actor"], h["role"]) for h in history] == [
            ("asisten.pvl.2", "assistant")] * 3 + [("narahubung.pln", "liaison"),
                                                   ("asisten.pvl.2", "assistant")]
        assert [h["note"] for h in history] == [None, None, "Mohon penjelasan", "Sudah",
                                                "Selesai"]
        assert [h["reason"] for h in history] == [None] * 4 + ["resolved_by_agency"]
        times = [parse_time(h["at"]) for h in history]
        assert times == sorted(times)
        assert parse_time(history[0]["at"]) >= parse_time(closed["received_at"])

        # Each transition is published with the case, in the same order (EVENTS.md).
        events = await transitioned_events(services.database_url, cid)
        assert [(e["data"]["action"], e["data"]["version"]) for e in events] == [
            (h["action"], i + 2) for i, h in enumerate(history)]
        assert events[-1]["data"]["closure_stage"] == "examination"
        assert events[-1]["data"]["reason"] == "resolved_by_agency"
        assert events[3]["data"]["role"] == "liaison"


async def test_reject_takes_each_of_its_reasons(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        received = await cases_at(client, tokens, "received", 4)
        awaiting = await cases_at(client, tokens, "awaiting_completion", 3)
        sources = received + awaiting
        for reason in ALL_REASONS:
            if reason not in REJECT_REASONS:
                response = await act(client, tokens.assistant, sources[0]["id"], "reject",
                                     reason=reason)
                assert response.status_code == 422, (reason, response.text)
                assert response.json()["errors"][0]["field"] == "/reason"
        for case, reason in zip(sources, REJECT_REASONS, strict=True):
            source = case["status"]
            closed = await ok(client, tokens.assistant, case["id"], "reject", reason=reason,
                              note="Tidak memenuhi syarat")
            assert closed["status"] == "closed"
            assert closed["closure_stage"] == "verification"
            assert closed["closure_reason"] == reason
            assert last(closed)["from_status"] == source
            assert last(closed)["reason"] == reason
        registered = await case_at(client, tokens, "registered")
        late = await act(client, tokens.assistant, registered["id"], "reject", reason="duplicate")
        assert late.status_code == 409


@pytest.mark.parametrize("source", ["in_examination", "agency_responded", "corrective_action"])
async def test_close_reasons_depend_on_the_state(services: BackingServices, source: str) -> None:
    # From corrective_action: the general close reasons and two more (API.md).
    allowed = (EXAMINATION_CLOSE + RESOLUTION_CLOSE if source == "corrective_action"
               else EXAMINATION_CLOSE)
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        cases = await cases_at(client, tokens, source, len(allowed))
        for reason in ALL_REASONS:
            if reason not in allowed:
                response = await act(client, tokens.assistant, cases[0]["id"], "close",
                                     reason=reason)
                assert response.status_code == 422, (reason, response.text)
                assert response.json()["errors"][0]["field"] == "/reason"
        for case, reason in zip(cases, allowed, strict=True):
            closed = await ok(client, tokens.assistant, case["id"], "close", reason=reason)
            assert closed["status"] == "closed"
            assert closed["closure_reason"] == reason
            assert closed["closure_stage"] == STAGE[source]
            events = await transitioned_events(services.database_url, case["id"])
            assert events[-1]["data"]["closure_stage"] == STAGE[source]


async def test_close_is_not_open_to_early_or_waiting_cases(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        for status in ("received", "awaiting_completion", "registered", "awaiting_agency"):
            case = await case_at(client, tokens, status)
            response = await act(client, tokens.assistant, case["id"], "close",
                                 reason="examination_stopped")
            assert response.status_code == 409, status
            assert "close" not in response.json()["allowed_actions"]


async def test_transfer_from_received_or_registered(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        for status in ("received", "registered"):
            case = await case_at(client, tokens, status)
            given_reason = await act(client, tokens.assistant, case["id"], "transfer",
                                     transferred_to="Komnas HAM", reason="duplicate")
            assert given_reason.status_code == 422
            assert given_reason.json()["errors"][0]["field"] == "/reason"
            closed = await ok(client, tokens.assistant, case["id"], "transfer",
                              transferred_to="Komnas HAM", note="Bukan kewenangan")
            assert closed["status"] == "closed"
            assert closed["closure_reason"] == "transferred"
            assert closed["closure_stage"] == "verification"
            assert closed["transferred_to"] == "Komnas HAM"
            assert last(closed)["reason"] == "transferred"
        examined = await case_at(client, tokens, "in_examination")
        late = await act(client, tokens.assistant, examined["id"], "transfer",
                         transferred_to="Komnas HAM")
        assert late.status_code == 409


async def test_withdraw_from_every_open_status(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        cases = await asyncio.gather(*(case_at(client, tokens, s) for s in OPEN_STATUSES))
        for case in cases:
            source = case["status"]
            closed = await ok(client, tokens.assistant, case["id"], "withdraw",
                              note="Pelapor mencabut laporan")
            assert closed["status"] == "closed"
            assert closed["closure_reason"] == "withdrawn"
            assert closed["closure_stage"] == STAGE[source], source
            assert last(closed)["from_status"] == source
            again = await act(client, tokens.assistant, case["id"], "withdraw")
            assert again.status_code == 409
            assert again.json()["allowed_actions"] == []


async def test_complexity_is_one_of_three(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        cases = await cases_at(client, tokens, "received", 4)
        bad = await act(client, tokens.assistant, cases[0]["id"], "register", complexity="huge")
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "/complexity"
        for case, complexity in zip(cases, ["simple", "medium", "heavy", None], strict=True):
            fields = {"complexity": complexity} if complexity else {}
            registered = await ok(client, tokens.assistant, case["id"], "register", **fields)
            assert registered["complexity"] == complexity
            assert last(registered)["details"].get("complexity") == complexity


async def test_rapid_response_skips_the_formal_check(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        rapid = await open_case(client, tokens, kind="rapid_response",
                                reported_to_agency_first=False)
        assert rapid["kind"] == "rapid_response"
        assert "register" in rapid["allowed_actions"]
        registered = await ok(client, tokens.assistant, rapid["id"], "register")
        assert registered["status"] == "registered"

        # A report whose reporter did not go to the agency first cannot be registered, and the
        # case says so in its allowed actions (the 409 too).
        report = await open_case(client, tokens, reported_to_agency_first=False)
        assert "register" not in report["allowed_actions"]
        refused = await act(client, tokens.assistant, report["id"], "register")
        assert refused.status_code == 409
        assert "register" not in refused.json()["allowed_actions"]
        assert "reject" in refused.json()["allowed_actions"]
        rejected = await ok(client, tokens.assistant, report["id"], "reject",
                            reason="not_reported_to_agency")
        assert rejected["closure_stage"] == "verification"
        # An admin may take every action (API.md), as imports of historical records need.
        imported = await open_case(client, tokens, reported_to_agency_first=False)
        registered = await ok(client, tokens.admin, imported["id"], "register")
        assert registered["status"] == "registered"


async def test_a_completion_round_supplies_the_missing_formal_requirement(
    services: BackingServices,
) -> None:
    """DOMAIN.md: incomplete formal requirements are completed (request_completion, then
    complete), after which the assistant registers the report as any other."""
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        report = await open_case(client, tokens, reported_to_agency_first=False)
        refused = await act(client, tokens.assistant, report["id"], "register")
        assert refused.status_code == 409
        await ok(client, tokens.assistant, report["id"], "request_completion",
                 note="Mohon lampirkan bukti pengaduan ke instansi")
        completed = await ok(client, tokens.assistant, report["id"], "complete",
                             note="Bukti pengaduan ke instansi terlampir")
        assert completed["status"] == "received"
        assert "register" in completed["allowed_actions"]
        assert completed["reported_to_agency_first"] is True
        registered = await ok(client, tokens.assistant, report["id"], "register")
        assert registered["status"] == "registered"
        liaison_view = await get_case(client, tokens.liaison, report["id"])
        assert liaison_view["reported_to_agency_first"] is True


async def test_own_initiative_starts_registered(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await open_case(client, tokens, kind="own_initiative", reporter=None)
        assert case["kind"] == "own_initiative"
        assert case["status"] == "registered"
        assert case["version"] == 1
        assert case["reporter"] is None
        assert sorted(case["allowed_actions"]) == ["start_examination", "transfer", "withdraw"]
        register = await act(client, tokens.assistant, case["id"], "register")
        assert register.status_code == 409
        examined = await ok(client, tokens.assistant, case["id"], "start_examination",
                            assignee="asisten.iaps")
        assert examined["status"] == "in_examination"
        listed = await client.get("/v1/cases?status=in_examination",
                                  headers=bearer(tokens.assistant))
        assert [c["id"] for c in listed.json()["items"]] == [case["id"]]


async def test_default_due_dates_count_from_the_effective_time(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    received = datetime(2022, 3, 3, 2, 15, tzinfo=UTC)
    async with running_app(services, expiry_interval_seconds=3600) as client:
        first, second = [await open_case(client, tokens, received_at=received.isoformat())
                         for _ in range(2)]
        adm = tokens.admin

        def at(days: float) -> str:
            return (received + timedelta(days=days)).isoformat()

        waiting = await ok(client, adm, first["id"], "request_completion", note="Lengkapi",
                           effective_at=at(1))
        assert parse_time(last(waiting)["at"]) == received + timedelta(days=1)
        assert parse_time(waiting["due_at"]) == due_after(received + timedelta(days=1), 30)
        assert last(waiting)["details"]["due_at"] == waiting["due_at"]
        assert waiting["due_at"].endswith("Z")

        await ok(client, adm, second["id"], "register", effective_at=at(1))
        await ok(client, adm, second["id"], "start_examination", assignee="a", effective_at=at(2))
        asking = await ok(client, adm, second["id"], "request_clarification", note="?",
                          effective_at=at(3.5))
        assert parse_time(asking["due_at"]) == due_after(received + timedelta(days=3.5), 14)
        assert asking["overdue"] is True
        answered = await ok(client, adm, second["id"], "respond", note="!",
                            resolution="explained", effective_at=at(10))
        assert answered["due_at"] is None
        assert answered["overdue"] is False
        finding = await ok(client, adm, second["id"], "find_maladministration",
                           maladministration="incompetence", effective_at=at(12))
        assert parse_time(finding["due_at"]) == due_after(received + timedelta(days=12), 30)
        events = await transitioned_events(services.database_url, second["id"])
        assert events[-1]["data"]["due_at"] == finding["due_at"]
        assert parse_time(events[-1]["data"]["at"]) == received + timedelta(days=12)

        # Without effective_at, the server's clock is the effective time.
        fresh = await case_at(client, tokens, "in_examination")
        before = datetime.now(UTC)
        asking = await ok(client, tokens.assistant, fresh["id"], "request_clarification",
                          note="?")
        effective = parse_time(last(asking)["at"])
        assert before - timedelta(seconds=5) <= effective <= datetime.now(UTC)
        assert parse_time(asking["due_at"]) == due_after(effective, 14)


async def test_an_explicit_due_date_replaces_the_default(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        received, examined = await asyncio.gather(case_at(client, tokens, "received"),
                                                  case_at(client, tokens, "in_examination"))
        due = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
        wib = timezone(timedelta(hours=7))
        waiting = await ok(client, tokens.assistant, received["id"], "request_completion",
                           note="Lengkapi", due_at=due.astimezone(wib).isoformat())
        assert parse_time(waiting["due_at"]) == due
        assert waiting["due_at"].endswith("Z")
        event = (await transitioned_events(services.database_url, received["id"]))[-1]["data"]
        assert event["due_at"] == waiting["due_at"]  # in UTC with a Z, whatever offset was given
        past = await act(client, tokens.assistant, examined["id"], "request_clarification",
                         note="?", due_at="2022-01-01T00:00:00+07:00")
        assert past.status_code == 422
        assert past.json()["errors"][0]["field"] == "/due_at"
        naive = await act(client, tokens.assistant, examined["id"], "find_maladministration",
                          maladministration="incompetence", due_at="2030-01-01T00:00:00")
        assert naive.status_code == 422
        assert naive.json()["errors"][0]["field"] == "/due_at"
        not_here = await act(client, tokens.assistant, examined["id"], "close",
                             reason="no_maladministration", due_at=due.isoformat())
        assert not_here.status_code == 422
        assert not_here.json()["errors"][0]["field"] == "/due_at"


async def test_days_are_counted_on_the_office_calendar(services: BackingServices) -> None:
    """ADUAN_TIMEZONE is configurable; "days" are calendar days there, across a DST change."""
    tokens = await Tokens.create(services)
    async with running_app(services, timezone="Europe/Berlin",
                           expiry_interval_seconds=3600) as client:
        case = await open_case(client, tokens, received_at="2022-03-03T09:15:00+07:00")
        waiting = await ok(client, tokens.admin, case["id"], "request_completion", note="x",
                           effective_at="2022-03-20T10:00:00+01:00")
        # 30 calendar days after 20 March is 19 April; 2022-03-27 moved Berlin to summer
        # time, so its end, 24:00 CEST, is 22:00Z.
        assert waiting["due_at"] == "2022-04-19T22:00:00Z"


async def test_overdue_on_the_case_and_in_the_list(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    now = datetime.now(UTC)
    long_ago = (now - timedelta(days=60)).isoformat()
    async with running_app(services, expiry_interval_seconds=3600) as client:
        cases = [await open_case(client, tokens, received_at=long_ago) for _ in range(4)]
        # Newest first, overdue and not alternate: a filter applied after paging would lose some.
        on_time, late_answer, closed, late_action = (c["id"] for c in cases)
        adm = tokens.admin
        ago = (now - timedelta(days=50)).isoformat()
        for cid in (late_answer, late_action, on_time, closed):
            await ok(client, adm, cid, "register", effective_at=ago)
            await ok(client, adm, cid, "start_examination", assignee="asisten.1",
                     effective_at=ago)
        await ok(client, adm, late_answer, "request_clarification", note="?", effective_at=ago)
        await ok(client, adm, late_action, "find_maladministration",
                 maladministration="undue_delay", effective_at=ago)
        await ok(client, adm, on_time, "request_clarification", note="?")
        await ok(client, adm, closed, "request_clarification", note="?", effective_at=ago)
        await ok(client, adm, closed, "withdraw")
        fresh = await open_case(client, tokens)

        expected = {late_answer: True, late_action: True, on_time: False, closed: False,
                    fresh["id"]: False}
        for cid, overdue in expected.items():
            assert (await get_case(client, tokens.assistant, cid))["overdue"] is overdue, cid

        headers = bearer(tokens.assistant)
        listed = (await client.get("/v1/cases?overdue=true", headers=headers)).json()
        assert {c["id"] for c in listed["items"]} == {late_answer, late_action}
        assert all(c["overdue"] for c in listed["items"])
        both = await client.get("/v1/cases?overdue=true&status=awaiting_agency", headers=headers)
        assert [c["id"] for c in both.json()["items"]] == [late_answer]

        # overdue=false pages through the others, page by page, missing none.
        seen: list[str] = []
        cursor = None
        while True:
            url = "/v1/cases?overdue=false&limit=1" + (f"&cursor={cursor}" if cursor else "")
            page = (await client.get(url, headers=headers)).json()
            assert len(page["items"]) == 1 or not page["next_cursor"]
            seen += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [fresh["id"], closed, on_time]


async def test_overdue_follows_the_clock(services: BackingServices) -> None:
    """The injectable clock: 15 days later a 14-day clarification request is overdue."""
    from shared.clock import ShiftedClock

    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await case_at(client, tokens, "awaiting_agency")
        assert case["overdue"] is False
    async with running_app(services, clock=ShiftedClock(timedelta(days=15))) as later:
        seen = await get_case(later, tokens.assistant, case["id"])
        assert seen["overdue"] is True
        listed = (await later.get("/v1/cases?overdue=true",
                                  headers=bearer(tokens.assistant))).json()
        assert [c["id"] for c in listed["items"]] == [case["id"]]
        answered = await ok(later, tokens.liaison, case["id"], "respond", note="Terlambat",
                            resolution="explained")
        assert answered["overdue"] is False
