"""What the OpenAPI document says about the case operations, with worked examples.

The transitions operation carries the workflow table itself, drawn from ``workflow.WORKFLOW``,
so the document and the code cannot disagree.
"""

from __future__ import annotations

from typing import Any

from case_api.workflow import PUBLIC_ACTIONS, WORKFLOW, Action, Status
from shared.openapi import Guide

CASE_ID = "0b8f6a52-3d2e-4c51-9a43-1f0e7c2d9b11"
CASE: dict[str, Any] = {
    "id": CASE_ID, "tracking_number": "ADU-2022-000193", "kind": "report",
    "status": "awaiting_agency", "version": 5, "channel": "complaint_post",
    "substance": "electricity",
    "reported_agency": {"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Bangka Belitung"},
    "reporter": {"name": "Siti Aminah", "email": "siti@example.id", "phone": "+62811000000",
                 "identity_number": "1971000000000001", "address": "Pangkalpinang",
                 "confidential": False},
    "summary": "Pemadaman listrik berulang tanpa pemberitahuan",
    "description": "Listrik padam tiga kali seminggu sejak Februari.",
    "incident_date": "2022-03-02",
    "location": {"regency": "Pangkalpinang", "place": "Kantor Kelurahan Bukit Intan"},
    "reported_to_agency_first": True, "received_at": "2022-03-03T02:15:00Z",
    "assignee": "asisten.pemeriksaan.1", "due_at": "2022-03-24T16:59:59Z", "overdue": False,
    "closure_stage": None, "closure_reason": None, "maladministration": None,
}
HISTORY = [
    {"action": "register", "from_status": "received", "to_status": "registered",
     "actor": "asisten.pvl.2", "role": "assistant", "at": "2022-03-04T03:00:00Z",
     "note": None, "reason": None, "details": {"complexity": "medium"}},
    {"action": "start_examination", "from_status": "registered", "to_status": "in_examination",
     "actor": "asisten.pvl.2", "role": "assistant", "at": "2022-03-07T02:00:00Z",
     "note": None, "reason": None, "details": {"assignee": "asisten.pemeriksaan.1"}},
    {"action": "request_clarification", "from_status": "in_examination",
     "to_status": "awaiting_agency", "actor": "asisten.pemeriksaan.1", "role": "assistant",
     "at": "2022-03-10T03:00:00Z", "note": "Mohon penjelasan jadwal pemadaman.",
     "reason": None, "details": {"due_at": "2022-03-24T16:59:59Z"}},
]
FULL_CASE = {**CASE, "complexity": "medium", "resolution": None, "transferred_to": None,
             "allowed_actions": ["respond", "close", "withdraw"], "history": HISTORY}
RESPONDED = {**FULL_CASE, "status": "agency_responded", "version": 6, "due_at": None,
             "resolution": "explained",
             "allowed_actions": ["request_clarification", "find_maladministration", "close",
                                 "withdraw"],
             "history": [*HISTORY, {
                 "action": "respond", "from_status": "awaiting_agency",
                 "to_status": "agency_responded", "actor": "narahubung-pln", "role": "liaison",
                 "at": "2022-03-15T04:00:00Z",
                 "note": "Pemadaman karena pemeliharaan gardu; jadwal kini diumumkan.",
                 "reason": None, "details": {"resolution": "explained"}}]}


def _statuses(statuses: frozenset[Status]) -> str:
    if statuses == frozenset(s for s in Status if s is not Status.closed):
        return "any open status"
    return ", ".join(s.value for s in Status if s in statuses)


def _target(action: Action) -> str:
    return "the same status" if action.target is None else action.target.value


def workflow_table() -> str:
    """The contract's state-machine table (API.md, "Cases"), from the table the code runs."""
    rows = ["| action | from | to | role | required | optional |", "|---|---|---|---|---|---|"]
    for name in PUBLIC_ACTIONS:
        action = WORKFLOW[name]
        roles = ", ".join(sorted(r.value for r in action.roles))
        rows.append(f"| `{name.value}` | {_statuses(action.sources)} | {_target(action)} | "
                    f"{roles} | {', '.join(action.required) or '-'} | "
                    f"{', '.join(action.optional) or '-'} |")
    return "\n".join(rows)


TRANSITIONS = (
    "Moves a case one step through the workflow and answers the updated case with its new "
    "`ETag`. Send `If-Match: \"<version>\"` to act only on the version you read (412 "
    "otherwise). Roles: as the table's role column says (a liaison only on cases of its own "
    "agency); an admin may take every action; `effective_at` (back-dating, for imports) "
    "is for admin only.\n\n" + workflow_table() + "\n\n"
    "`reject` reasons: incomplete, not_reported_to_agency, out_of_jurisdiction, in_court, "
    "expired, duplicate, already_resolved. `close` reasons: resolved_by_agency, "
    "no_maladministration, examination_stopped, and from corrective_action also "
    "corrective_action_completed and recommendation_issued. The closure stage is "
    "verification from received, awaiting_completion or registered; examination from "
    "in_examination, awaiting_agency or agency_responded; resolution from corrective_action."
    "\n\n`assign_agency` is an addition to API.md's table: it gives a report filed without an "
    "agency (Open311, agency `unassigned`) the agency it is about, during verification, and "
    "is allowed (and listed in `allowed_actions`) only while the case's agency is "
    "`unassigned`; `reported_agency` is checked as a complaint's (code "
    "`^[a-z0-9][a-z0-9-]{1,63}$`, not `unassigned`; a name). The status, due date and "
    "figures stay as they were; from then on the new agency's liaisons see the case."
    "\n\nExample: a liaison of the case's agency answers a clarification request.")

GUIDES = {
    "GET /v1/cases": Guide(
        "Cases, a page at a time, filtered by `status`, `agency`, `assignee` or `overdue`. Each "
        "item is the case as `GET /v1/cases/{case_id}` answers it, history and allowed actions "
        "included. A liaison sees only its agency's cases, and a confidential reporter as "
        "`{\"confidential\": true}`. Roles: assistant, admin, liaison, analyst (analysts see no "
        "description or location).\n\n"
        "Example: `GET /v1/cases?status=awaiting_agency&overdue=true`.",
        {"items": [FULL_CASE], "next_cursor": None}),
    "GET /v1/cases/{case_id}": Guide(
        "One case with its history and the actions the caller may take now, and "
        "`ETag: \"<version>\"` for `If-Match`. A case outside a liaison's agency is 404. Roles: "
        "assistant, admin, liaison, analyst.",
        FULL_CASE),
    "POST /v1/cases/{case_id}/transitions": Guide(
        TRANSITIONS, RESPONDED,
        request={"action": "respond", "resolution": "explained",
                 "note": "Pemadaman karena pemeliharaan gardu; jadwal kini diumumkan."}),
    "GET /v1/agencies": Guide(
        "Agencies seen in complaints, with their open and total cases, a page at a time; a "
        "liaison sees only its own. Roles: assistant, admin, liaison, analyst.",
        {"items": [{"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Bangka Belitung",
                    "open_cases": 42, "total_cases": 231, "complaints": 240}],
         "next_cursor": None}),
    "PUT /v1/agencies/{code}": Guide(
        "Roles: assistant, admin. 200 when the agency was known (renamed), 201 when it is "
        "registered now.\n\nExample: `PUT /v1/agencies/pln-uiw-babel`.",
        {"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Bangka Belitung",
         "open_cases": 42, "total_cases": 231, "complaints": 240},
        request={"name": "PT PLN (Persero) UIW Bangka Belitung"}),
    "GET /v1/agencies/{code}": Guide(
        "One agency by its code. Roles: assistant, admin, liaison (its own), analyst.",
        {"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Bangka Belitung",
         "open_cases": 42, "total_cases": 231, "complaints": 240}),
}
