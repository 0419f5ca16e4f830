"""The end-to-end scenario: 200 complaints from two partners through the whole pipeline.

The expected figures are computed here, independently of the services, from what the test
itself sent and did.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.support import bearer, complaint, eventually

ZONE = ZoneInfo("Asia/Jakarta")
KINDS = ["report"] * 12 + ["rapid_response"] * 2 + ["consultation"] * 3 + ["copy_letter"] * 2 \
    + ["own_initiative"]
CHANNELS = ["complaint_post", "website", "whatsapp", "walk_in", "national_portal", "on_the_spot"]
SUBSTANCES = ["electricity", "land", "police", "education", "health"]
AGENCIES = [("pln-uiw-babel", "PT PLN UIW Babel"), ("bpn-pangkalpinang", "BPN Pangkalpinang"),
            ("polda-babel", "Polda Babel"), ("disdik-bangka", "Dinas Pendidikan Bangka")]
CASE_KINDS = {"report", "rapid_response", "own_initiative"}


@dataclass
class Endpoints:
    intake: str
    case: str
    metrics: str


@dataclass
class Tokens:
    partners: list[str]
    assistant: str


@dataclass
class Outcome:
    sent: list[dict[str, Any]] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)
    registered: set[str] = field(default_factory=set)
    examined: set[str] = field(default_factory=set)
    closed: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (stage, reason)

    def expected_summary(self) -> dict[str, Any]:
        kinds = Counter(c["kind"] for c in self.sent)
        received = [c for c in self.sent if c["kind"] in CASE_KINDS]
        handled = len(self.case_ids)
        closed = len(self.closed)
        return {
            "contacts": len(self.sent),
            "contacts_by_kind": {k: kinds.get(k, 0) for k in
                                 ("report", "rapid_response", "own_initiative", "consultation",
                                  "copy_letter")},
            "received": len(received),
            "received_by_channel": dict(sorted(Counter(c["channel"] for c in received).items())),
            "received_by_substance": dict(sorted(
                Counter(c["substance"] for c in received).items())),
            "registered": len(self.registered),
            "handled": handled,
            "closed": closed,
            "closed_by_stage": dict(sorted(Counter(s for s, _ in self.closed.values()).items())),
            "closed_by_reason": dict(sorted(Counter(r for _, r in self.closed.values()).items())),
            "closure_rate": round(closed / handled, 4) if handled else 0.0,
            "examination_handled": len(self.examined),
        }


def period_params() -> dict[str, str]:
    today = datetime.now(UTC).astimezone(ZONE).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}


async def post_complaints(client: httpx.AsyncClient, at: Endpoints, tokens: Tokens,
                          count: int, rng: random.Random) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        kind = rng.choice(KINDS)
        code, name = rng.choice(AGENCIES)
        channel = rng.choice(CHANNELS)
        body = complaint(kind=kind, channel=channel, substance=rng.choice(SUBSTANCES),
                         reported_agency={"code": code, "name": name},
                         external_reference=f"REF-{i:04d}",
                         location={"regency": "Bangka", "place": f"Titik {i % 7}"})
        if kind == "own_initiative":
            body["reporter"] = None
            token = tokens.assistant
        else:
            token = tokens.partners[i % 2]
        bodies.append((body, token))

    semaphore = asyncio.Semaphore(16)

    async def send(body: dict[str, Any], token: str) -> dict[str, Any]:
        async with semaphore:
            response = await client.post(f"{at.intake}/v1/complaints", json=body,
                                         headers=bearer(token))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return list(await asyncio.gather(*(send(b, t) for b, t in bodies)))


async def act(client: httpx.AsyncClient, at: Endpoints, token: str, case_id: str,
              body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{at.case}/v1/cases/{case_id}/transitions", json=body,
                                 headers=bearer(token))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def run(client: httpx.AsyncClient, at: Endpoints, tokens: Tokens, *,
              count: int = 200, seed: int = 2022) -> Outcome:
    rng = random.Random(seed)
    outcome = Outcome()
    outcome.sent = await post_complaints(client, at, tokens, count, rng)
    case_ids = [c["id"] for c in outcome.sent if c["kind"] in CASE_KINDS]
    outcome.case_ids = case_ids

    async def all_opened() -> None:
        for case_id in case_ids:
            response = await client.get(f"{at.case}/v1/cases/{case_id}",
                                        headers=bearer(tokens.assistant))
            assert response.status_code == 200, f"case {case_id} not open yet"

    await eventually(all_opened, timeout=90, interval=0.5)

    kinds = {c["id"]: c["kind"] for c in outcome.sent}
    assistant = tokens.assistant
    for index, case_id in enumerate(case_ids):
        plan = index % 6
        if kinds[case_id] == "own_initiative":
            if plan < 3:
                await act(client, at, assistant, case_id,
                          {"action": "start_examination", "assignee": "asisten.1"})
                outcome.examined.add(case_id)
            continue
        if plan == 0:
            await act(client, at, assistant, case_id,
                      {"action": "reject", "reason": "out_of_jurisdiction"})
            outcome.closed[case_id] = ("verification", "out_of_jurisdiction")
        elif plan in (1, 2, 3, 4):
            await act(client, at, assistant, case_id, {"action": "register",
                                                       "complexity": "simple"})
            outcome.registered.add(case_id)
            if plan >= 2:
                await act(client, at, assistant, case_id,
                          {"action": "start_examination", "assignee": "asisten.2"})
                outcome.examined.add(case_id)
            if plan == 3:
                await act(client, at, assistant, case_id,
                          {"action": "close", "reason": "no_maladministration"})
                outcome.closed[case_id] = ("examination", "no_maladministration")
            if plan == 4:
                await act(client, at, assistant, case_id, {"action": "withdraw"})
                outcome.closed[case_id] = ("examination", "withdrawn")
    return outcome


def project(summary: dict[str, Any]) -> dict[str, Any]:
    """The part of a summary the scenario predicts."""
    keys = ("contacts", "contacts_by_kind", "received", "received_by_channel",
            "received_by_substance", "registered", "handled", "closed", "closed_by_stage",
            "closed_by_reason", "closure_rate")
    result = {k: summary[k] for k in keys}
    result["examination_handled"] = summary["examination"]["handled"]
    return result


async def metrics_match(client: httpx.AsyncClient, at: Endpoints, token: str,
                        outcome: Outcome, *, timeout: float = 90) -> dict[str, Any]:
    expected = outcome.expected_summary()

    async def check() -> dict[str, Any]:
        response = await client.get(f"{at.metrics}/v1/metrics/summary", params=period_params(),
                                    headers=bearer(token))
        assert response.status_code == 200, response.text
        summary: dict[str, Any] = response.json()
        assert project(summary) == expected
        return summary

    return await eventually(check, timeout=timeout, interval=0.5)


async def statuses_follow(client: httpx.AsyncClient, at: Endpoints, tokens: Tokens,
                          outcome: Outcome) -> None:
    """A complaint's status follows its case (eventually consistent)."""

    async def check() -> None:
        for case_id in outcome.closed:
            response = await client.get(f"{at.intake}/v1/complaints/{case_id}",
                                        headers=bearer(tokens.assistant))
            assert response.json()["status"] == "closed", case_id

    await eventually(check, timeout=60, interval=0.5)
