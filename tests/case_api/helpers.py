"""Opening cases and moving them through the workflow, for the case service's tests.

A case is opened asynchronously from a complaint (``complaint.received``), so ``open_case``
posts the complaint and waits until ``GET /v1/cases/{id}`` answers 200.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.support import BackingServices, bearer, complaint, eventually, query

AGENCY = "pln-uiw-babel"
OTHER_AGENCY = "bpn-pangkalpinang"

# How the assistant brings a fresh ``received`` report to each open status.
PATHS: dict[str, list[dict[str, Any]]] = {
    "received": [],
    "awaiting_completion": [{"action": "request_completion", "note": "KTP belum dilampirkan"}],
    "registered": [{"action": "register", "complexity": "simple"}],
    "in_examination": [{"action": "register"},
                       {"action": "start_examination", "assignee": "asisten.pemeriksaan.1"}],
    "awaiting_agency": [{"action": "register"},
                        {"action": "start_examination", "assignee": "asisten.pemeriksaan.1"},
                        {"action": "request_clarification", "note": "Mohon penjelasan"}],
    "agency_responded": [{"action": "register"},
                         {"action": "start_examination", "assignee": "asisten.pemeriksaan.1"},
                         {"action": "request_clarification", "note": "Mohon penjelasan"},
                         {"action": "respond", "note": "Sudah diperbaiki",
                          "resolution": "resolved"}],
    "corrective_action": [{"action": "register"},
                          {"action": "start_examination", "assignee": "asisten.pemeriksaan.1"},
                          {"action": "find_maladministration",
                           "maladministration": "undue_delay"}],
}
OPEN_STATUSES = list(PATHS)


@dataclass
class Tokens:
    partner: str
    assistant: str
    admin: str
    analyst: str
    liaison: str  # of AGENCY
    other_liaison: str  # of OTHER_AGENCY

    @classmethod
    async def create(cls, services: BackingServices) -> Tokens:
        return cls(
            partner=await services.token("partner", "posko-pln"),
            assistant=await services.token("assistant", "asisten.pvl.2"),
            admin=await services.token("admin", "admin.kantor"),
            analyst=await services.token("analyst", "bi.tool"),
            liaison=await services.token("liaison", "narahubung.pln", agency=AGENCY),
            other_liaison=await services.token("liaison", "narahubung.bpn", agency=OTHER_AGENCY),
        )


def poster(tokens: Tokens, body: dict[str, Any]) -> str:
    """Who files a complaint: own_initiative needs an assistant, back-dating an admin."""
    if "received_at" in body:
        return tokens.admin
    return tokens.assistant if body.get("kind") == "own_initiative" else tokens.partner


async def post_complaint(client: httpx.AsyncClient, tokens: Tokens, **overrides: Any) -> str:
    body = complaint(**overrides)
    if body.get("kind") == "own_initiative":
        body.setdefault("reporter", None)
    response = await client.post("/v1/complaints", json=body,
                                 headers=bearer(poster(tokens, body)))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def wait_case(client: httpx.AsyncClient, token: str, case_id: str,
                    timeout: float = 30.0) -> dict[str, Any]:
    async def opened() -> dict[str, Any]:
        response = await client.get(f"/v1/cases/{case_id}", headers=bearer(token))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return await eventually(opened, timeout=timeout, interval=0.05)


async def open_case(client: httpx.AsyncClient, tokens: Tokens, **overrides: Any) -> dict[str, Any]:
    """Files a complaint and waits until its case is open; returns the case (as the assistant)."""
    case_id = await post_complaint(client, tokens, **overrides)
    return await wait_case(client, tokens.assistant, case_id)


async def open_cases(client: httpx.AsyncClient, tokens: Tokens, count: int,
                     **overrides: Any) -> list[dict[str, Any]]:
    ids = [await post_complaint(client, tokens, **overrides) for _ in range(count)]
    return list(await asyncio.gather(*(wait_case(client, tokens.assistant, i) for i in ids)))


async def act(client: httpx.AsyncClient, token: str, case_id: str, action: str, *,
              if_match: int | str | None = None, **fields: Any) -> httpx.Response:
    headers = bearer(token)
    if if_match is not None:
        headers["If-Match"] = f'"{if_match}"' if isinstance(if_match, int) else if_match
    return await client.post(f"/v1/cases/{case_id}/transitions",
                             json={"action": action, **fields}, headers=headers)


async def ok(client: httpx.AsyncClient, token: str, case_id: str, action: str,
             **fields: Any) -> dict[str, Any]:
    response = await act(client, token, case_id, action, **fields)
    assert response.status_code == 200, (action, response.text)
    body: dict[str, Any] = response.json()
    assert response.headers["etag"] == f'"{body["version"]}"'
    return body


async def drive(client: httpx.AsyncClient, token: str, case_id: str,
                steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    body = None
    for step in steps:
        fields = dict(step)
        body = await ok(client, token, case_id, fields.pop("action"), **fields)
    return body


async def case_at(client: httpx.AsyncClient, tokens: Tokens, status: str,
                  **overrides: Any) -> dict[str, Any]:
    """A fresh case of AGENCY brought to ``status`` by the assistant."""
    case = await open_case(client, tokens, **overrides)
    moved = await drive(client, tokens.assistant, case["id"], PATHS[status])
    case = moved or case
    assert case["status"] == status
    return case


async def cases_at(client: httpx.AsyncClient, tokens: Tokens, status: str, count: int,
                   **overrides: Any) -> list[dict[str, Any]]:
    cases = await open_cases(client, tokens, count, **overrides)
    moved = await asyncio.gather(*(drive(client, tokens.assistant, c["id"], PATHS[status])
                                   for c in cases))
    return [m or c for m, c in zip(moved, cases, strict=True)]


async def get_case(client: httpx.AsyncClient, token: str, case_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/cases/{case_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def due_after(at: datetime, days: int, zone: str = "Asia/Jakarta") -> datetime:
    """24:00 local time of the calendar day ``days`` after ``at``'s day (API.md's example: a
    clarification asked on 10 March is due at 2022-03-24T17:00:00Z)."""
    office = ZoneInfo(zone)
    last_day = at.astimezone(office).date() + timedelta(days=days)
    return datetime.combine(last_day + timedelta(days=1), time(), office).astimezone(UTC)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def transitioned_events(database_url: str, case_id: str) -> list[dict[str, Any]]:
    """The ``case.transitioned`` events of one case in the case service's outbox, in order."""
    rows = await query(
        database_url,
        "SELECT envelope FROM cases.outbox WHERE key = $1 "
        "AND envelope->>'type' = 'id.go.ombudsman.aduan.case.transitioned.v1' ORDER BY id",
        case_id)
    return [json.loads(r["envelope"]) for r in rows]
