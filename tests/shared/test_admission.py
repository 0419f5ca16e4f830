"""A saturated service answers 503 with Retry-After at once, and loses nothing it answered 201."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from tests.support import BackingServices, bearer, complaint, running_app


async def _burst(client: httpx.AsyncClient, token: str, count: int) -> list[httpx.Response]:
    return list(await asyncio.gather(*(
        client.post("/v1/complaints", json=complaint(summary=f"keluhan {n}"),
                    headers=bearer(token))
        for n in range(count))))


async def _stored_ids(client: httpx.AsyncClient, token: str) -> set[str]:
    listed = await client.get("/v1/complaints", params={"limit": 200}, headers=bearer(token))
    assert listed.status_code == 200, listed.text
    return {item["id"] for item in listed.json()["items"]}


def _check_answers(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    """Only 201 or 503 problem JSON with Retry-After; returns the bodies of the 201s."""
    assert Counter(r.status_code for r in responses).keys() <= {201, 503}, \
        Counter(r.status_code for r in responses)
    for refused in (r for r in responses if r.status_code == 503):
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["status"] == 503
    return [r.json() for r in responses if r.status_code == 201]


async def test_requests_beyond_the_admission_limit_are_refused_with_retry_after(
        services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services, max_requests_in_flight=2, admission_queue=0) as client:
        responses, health = await asyncio.gather(_burst(client, token, 40),
                                                 client.get("/healthz"))
        created = _check_answers(responses)
        assert any(r.status_code == 503 for r in responses), "nothing was refused"
        assert created, "nothing was admitted"
        assert health.status_code == 200
        assert {c["id"] for c in created} == await _stored_ids(client, token)


async def test_waiting_requests_are_admitted_when_a_slot_frees_in_time(
        services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services, max_requests_in_flight=2, admission_queue=100,
                           admission_wait_seconds=30) as client:
        responses = await _burst(client, token, 20)
        assert [r.status_code for r in responses] == [201] * 20
        assert len(await _stored_ids(client, token)) == 20


async def test_an_exhausted_connection_pool_is_a_503_not_a_500(services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services, max_requests_in_flight=0, database_pool_size=1,
                           database_max_overflow=0, database_pool_timeout_seconds=0.05) as client:
        responses = await _burst(client, token, 30)
        created = _check_answers(responses)
        assert any(r.status_code == 503 for r in responses), "the pool was never exhausted"
        async with asyncio.timeout(30):
            while True:  # the consumers share the one connection; the list may wait its turn
                try:
                    stored = await _stored_ids(client, token)
                    break
                except AssertionError:
                    await asyncio.sleep(0.1)
        assert {c["id"] for c in created} == stored
