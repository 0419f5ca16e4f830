"""The complainant follows a complaint with its tracking number and access code, no account."""

from __future__ import annotations

import re
from typing import Any

from intake_api.access import ALPHABET
from tests.support import BackingServices, bearer, complaint, eventually, query, running_app

PUBLIC_FIELDS = {"tracking_number", "kind", "status", "received_at", "updated_at", "due_at",
                 "closure_stage", "closure_reason", "resolution"}


async def test_the_access_code_shows_status_and_outcome_only(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        created = (await client.post("/v1/complaints", json=complaint(),
                                     headers=bearer(partner))).json()
        code = created["access_code"]
        assert len(code.replace("-", "")) >= 10
        assert set(code.replace("-", "")) <= set(ALPHABET)
        assert not set(code) & set("01OIL")
        number = created["tracking_number"]

        answer = await client.post("/public/status",
                                   json={"tracking_number": number, "access_code": code})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == PUBLIC_FIELDS
        assert body["tracking_number"] == number
        assert body["status"] in ("received", "registered")
        assert "Siti" not in answer.text
        assert created["summary"] not in answer.text

        # The same fields as a form; the code as typed by hand, without dashes, in lower case.
        form = await client.post("/public/status", data={
            "tracking_number": number, "access_code": code.replace("-", "").lower()})
        assert form.status_code == 200, form.text
        assert form.json()["tracking_number"] == number

        rows = await query(services.database_url,
                           "SELECT c::text AS row FROM intake.complaints c WHERE id = $1::uuid",
                           created["id"])
        assert code not in rows[0]["row"]
        assert code.replace("-", "") not in rows[0]["row"]


async def test_a_wrong_code_and_an_unknown_number_are_the_same_404(
    services: BackingServices,
) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        created = (await client.post("/v1/complaints", json=complaint(),
                                     headers=bearer(partner))).json()
        wrong = await client.post("/public/status", json={
            "tracking_number": created["tracking_number"], "access_code": "ABCD-EFGH-JKMN"})
        unknown = await client.post("/public/status", json={
            "tracking_number": "ADU-2022-999999", "access_code": created["access_code"]})
        assert wrong.status_code == unknown.status_code == 404
        assert wrong.content == unknown.content
        assert wrong.headers["content-type"] == "application/problem+json"


async def test_bad_requests_are_clear_problems(services: BackingServices) -> None:
    async with running_app(services) as client:
        cases: list[tuple[dict[str, Any], int]] = [
            ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400),
            ({"json": {"tracking_number": "ADU-2022-000001"}}, 422),
            ({"json": {"tracking_number": "x", "access_code": "y", "more": 1}}, 422),
            ({"json": ["not", "an", "object"]}, 422),
            ({"json": {"tracking_number": "x" * 40, "access_code": "y"}}, 422),
            ({"content": b"tracking_number=x", "headers": {"content-type": "text/plain"}}, 415),
        ]
        for request, status in cases:
            response = await client.post("/public/status", **request)
            assert response.status_code == status, (request, response.text)
            assert response.headers["content-type"] == "application/problem+json"


async def test_lookups_are_limited_per_client_address(services: BackingServices) -> None:
    async with running_app(services, public_status_per_minute=3) as client:
        asked = {"tracking_number": "ADU-2022-000001", "access_code": "ABCD-EFGH-JKMN"}
        statuses = [(await client.post("/public/status", json=asked)).status_code
                    for _ in range(4)]
        assert statuses == [404, 404, 404, 429]
        limited = await client.post("/public/status", json=asked)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        page = await client.post("/status", data=asked)
        assert page.status_code == 429
        assert "Terlalu banyak" in page.text


async def test_an_idempotent_replay_shows_the_same_code(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        headers = {**bearer(partner), "Idempotency-Key": "posko-0193"}
        first = await client.post("/v1/complaints", json=complaint(), headers=headers)
        again = await client.post("/v1/complaints", json=complaint(), headers=headers)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["access_code"] == first.json()["access_code"]


async def test_the_status_page_works_without_javascript(services: BackingServices) -> None:
    partner = await services.token("partner")
    assistant = await services.token("assistant")
    async with running_app(services) as client:
        created = (await client.post("/v1/complaints", json=complaint(),
                                     headers=bearer(partner))).json()
        page = await client.get("/status")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<html lang="id">' in page.text
        assert "Status pengaduan" in page.text
        assert "Complaint status" in page.text
        assert "<script" not in page.text.lower()
        assert not re.search(r"(src|href)=\"(https?:)?//", page.text)
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert '<form method="post" action="/status">' in page.text

        async def rejected() -> None:
            await client.post(f"/v1/cases/{created['id']}/transitions",
                              json={"action": "reject", "reason": "in_court"},
                              headers=bearer(assistant))
            body = (await client.get(f"/v1/complaints/{created['id']}",
                                     headers=bearer(partner))).json()
            assert body["status"] == "closed"

        await eventually(rejected, timeout=20)
        answered = await client.post("/status", data={
            "tracking_number": created["tracking_number"], "access_code": created["access_code"]})
        assert answered.status_code == 200
        assert "Selesai" in answered.text
        assert "Closed" in answered.text
        assert "Sedang diperiksa pengadilan" in answered.text
        assert created["tracking_number"] in answered.text
        assert created["access_code"] not in answered.text

        wrong = await client.post("/status", data={
            "tracking_number": "<b>ADU</b>", "access_code": "nope"})
        assert wrong.status_code == 404
        assert "tidak cocok" in wrong.text
        assert "<b>ADU</b>" not in wrong.text


async def test_text_that_cannot_be_stored_is_refused_like_other_bad_text(
        services: BackingServices) -> None:
    """NUL or a lone surrogate in either field is 422 naming the field, as an over-long one is:
    in JSON, in a form, and on the HTML page (which answers its page, not problem JSON)."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with running_app(services) as client:
        for body, field in [
            (b'{"tracking_number": "ADU-2026-000001\\u0000", "access_code": "x"}',
             "/tracking_number"),
            (b'{"tracking_number": "ADU-2026-000001", "access_code": "x\\u0000"}',
             "/access_code"),
            (b'{"tracking_number": "ADU-2026-000001", "access_code": "\\udc00"}',
             "/access_code"),
        ]:
            answer = await client.post("/public/status", content=body,
                                       headers={"content-type": "application/json"})
            assert answer.status_code == 422, (body, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in answer.json()["errors"]] == [field]
        for body, field in [(b"tracking_number=ADU%00&access_code=x", "/tracking_number"),
                            (b"tracking_number=ADU-2026-000001&access_code=x%00",
                             "/access_code")]:
            answer = await client.post("/public/status", content=body, headers=form)
            assert answer.status_code == 422, (body, answer.text)
            assert [e["field"] for e in answer.json()["errors"]] == [field]
            page = await client.post("/status", content=body, headers=form)
            assert page.status_code == 422, (body, page.text)
            assert page.headers["content-type"].startswith("text/html")
            assert "The form is incomplete or invalid." in page.text
