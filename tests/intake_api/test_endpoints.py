"""POST /v1/complaints's two ways (intake_api/endpoints.py): its common case resolved by hand,
every other request by FastAPI, answered alike."""

from __future__ import annotations

import base64
import json
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi.dependencies.utils import solve_dependencies

from tests.support import BackingServices, bearer, complaint, running_app


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"sheet:{token}".encode()).decode()}


def answer(response: httpx.Response) -> tuple[int, str | None, str | None, Any]:
    """What a refusal says: status, content type, challenge, problem document."""
    return (response.status_code, response.headers.get("content-type"),
            response.headers.get("www-authenticate"), response.json())


async def test_the_common_case_skips_fastapis_resolution_and_refusals_read_alike(
        services: BackingServices, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complaint the model accepts, without a key, is recorded without FastAPI resolving
    the operation's parameters, whichever the scheme; any other request goes FastAPI's way.
    The refusals the hand-resolved way makes itself (unknown token, no token, a role not
    admitted) are those FastAPI's way makes of the same caller with a body it refuses."""
    resolved: list[str] = []

    async def counted(*, request: Any, **kwargs: Any) -> Any:
        resolved.append(request.url.path)
        return await solve_dependencies(request=request, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)
    partner = await services.token("partner", "posko-pln")
    analyst = await services.token("analyst", "bps-babel")

    async def post(body: Any, headers: dict[str, str]) -> tuple[httpx.Response, int]:
        before = len(resolved)
        response = await client.post("/v1/complaints", content=json.dumps(body),
                                     headers={"Content-Type": "application/json", **headers})
        return response, len(resolved) - before

    refused_body = complaint(summary=None, kind="gossip")
    async with running_app(services) as client:
        for headers in (bearer(partner), basic(partner),
                        {**bearer(partner), "Content-Type": "application/json; charset=utf-8"}):
            created, calls = await post(complaint(), headers)
            assert created.status_code == 201, created.text
            assert created.json()["tracking_number"].startswith("ADU-")
            assert created.headers["location"] == f"/v1/complaints/{created.json()['id']}"
            assert calls == 0

        keyed, calls = await post(complaint(), {**bearer(partner), "Idempotency-Key": "k-1"})
        assert keyed.status_code == 201
        assert calls == 1
        refused, calls = await post(refused_body, bearer(partner))
        assert refused.status_code == 422
        assert {e["field"] for e in refused.json()["errors"]} >= {"/summary", "/kind"}
        assert calls == 1

        for headers, status in (({}, 401), (bearer("adu_unknown"), 401),
                                (bearer(analyst), 403)):
            by_hand, calls = await post(complaint(), headers)
            assert calls == 0
            by_fastapi, calls = await post(refused_body, headers)
            assert calls == 1
            assert answer(by_hand) == answer(by_fastapi)
            assert by_hand.status_code == status
