"""POST/GET /v1/complaints against the real database (in-process app, database event log)."""

from __future__ import annotations

import asyncio
import uuid

from intake_api.schemas import ComplaintStatus
from shared.vocabulary import RECORDED, CaseStatus
from tests.support import BackingServices, bearer, complaint, running_app


async def test_a_complaint_is_recorded_with_location_and_tracking_number(
    services: BackingServices,
) -> None:
    token = await services.token("partner", "posko-pln")
    async with running_app(services) as client:
        response = await client.post("/v1/complaints", json=complaint(), headers=bearer(token))
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == f"/v1/complaints/{body['id']}"
        assert body["tracking_number"].startswith("ADU-")
        assert body["status"] == "received"
        assert body["submitted_by"] == "posko-pln"
        assert body["reporter"]["name"] == "Siti Aminah"
        fetched = await client.get(response.headers["location"], headers=bearer(token))
        code = body.pop("access_code")
        assert fetched.json() == body
        assert code not in fetched.text


async def test_kinds_that_open_no_case_are_recorded(services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services) as client:
        response = await client.post("/v1/complaints", json=complaint(kind="consultation"),
                                     headers=bearer(token))
        assert response.json()["status"] == "recorded"


async def test_validation_errors_name_each_field(services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services) as client:
        body = complaint(summary="", channel="pigeon", surprise=1)
        del body["substance"]
        response = await client.post("/v1/complaints", json=body, headers=bearer(token))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        fields = {e["field"] for e in problem["errors"]}
        assert {"/summary", "/channel", "/substance", "/surprise"} <= fields
        assert problem["status"] == 422
        assert problem["type"]
        assert problem["title"]
        # JSON says true or false: a string or a number standing for one is a wrong type.
        for field, body in [
            ("/reporter/confidential", complaint(reporter={"name": "Siti",
                                                           "confidential": "yes"})),
            ("/reporter/confidential", complaint(reporter={"name": "Siti", "confidential": 1})),
            ("/reported_to_agency_first", complaint(reported_to_agency_first="true")),
            ("/reported_to_agency_first", complaint(reported_to_agency_first=0)),
        ]:
            wrong = await client.post("/v1/complaints", json=body, headers=bearer(token))
            assert wrong.status_code == 422, (body, wrong.text)
            assert [e["field"] for e in wrong.json()["errors"]] == [field]
        # Dates stay strings, as JSON carries them.
        dated = await client.post("/v1/complaints", json=complaint(incident_date="2022-03-02"),
                                  headers=bearer(token))
        assert dated.status_code == 201, dated.text


async def test_domain_rules(services: BackingServices) -> None:
    partner = await services.token("partner")
    assistant = await services.token("assistant")
    admin = await services.token("admin")
    async with running_app(services) as client:
        cases = {
            "/reporter/name": complaint(reporter={"confidential": True}),
            "/location/place": complaint(channel="on_the_spot", location={"regency": "Bangka"}),
            "/incident_date": complaint(incident_date="2999-01-01"),
            "/received_at": complaint(received_at="2022-03-03T09:15:00+07:00"),
        }
        for field, body in cases.items():
            response = await client.post("/v1/complaints", json=body, headers=bearer(partner))
            assert response.status_code == 422, (field, response.text)
            assert response.json()["errors"][0]["field"] == field

        refused = await client.post("/v1/complaints", json=complaint(kind="own_initiative"),
                                    headers=bearer(partner))
        assert refused.status_code == 403
        own = await client.post("/v1/complaints", json=complaint(kind="own_initiative",
                                                                 reporter=None),
                                headers=bearer(assistant))
        assert own.status_code == 201
        assert own.json()["status"] == "registered"

        imported = await client.post(
            "/v1/complaints", json=complaint(received_at="2022-03-03T09:15:00+07:00"),
            headers=bearer(admin))
        assert imported.status_code == 201
        assert imported.json()["received_at"] == "2022-03-03T02:15:00Z"
        assert imported.json()["tracking_number"].startswith("ADU-2022-")


async def test_text_is_stored_verbatim(services: BackingServices) -> None:
    token = await services.token("partner")
    hostile = "<script>alert(1)</script>'; DROP TABLE intake.complaints; --"
    async with running_app(services) as client:
        response = await client.post("/v1/complaints", json=complaint(summary=hostile,
                                                                      description=hostile),
                                     headers=bearer(token))
        assert response.status_code == 201
        fetched = await client.get(response.headers["location"], headers=bearer(token))
        assert fetched.json()["summary"] == hostile
        nul = await client.post("/v1/complaints", json=complaint(summary="a\u0000b"),
                                headers=bearer(token))
        assert nul.status_code == 422


async def test_malformed_oversized_and_non_json_bodies(services: BackingServices) -> None:
    token = await services.token("partner")
    headers = bearer(token)
    async with running_app(services) as client:
        bad_json = await client.post("/v1/complaints", content=b'{"kind": ',
                                     headers={**headers, "content-type": "application/json"})
        assert bad_json.status_code == 400
        assert bad_json.headers["content-type"] == "application/problem+json"
        form = await client.post("/v1/complaints", content=b"kind=report",
                                 headers={**headers, "content-type": "text/plain"})
        assert form.status_code == 415
        huge = await client.post("/v1/complaints",
                                 json=complaint(description="x" * (300 * 1024)), headers=headers)
        assert huge.status_code == 413
        invalid_utf8 = await client.post("/v1/complaints", content=b'{"kind": "\xff\xfe"}',
                                         headers={**headers, "content-type": "application/json"})
        assert invalid_utf8.status_code in (400, 422)
        deep = await client.post("/v1/complaints", content=b"[" * 5000 + b"]" * 5000,
                                 headers={**headers, "content-type": "application/json"})
        assert deep.status_code in (400, 422)


async def test_tokens_and_roles(services: BackingServices) -> None:
    analyst = await services.token("analyst")
    liaison = await services.token("liaison", agency="pln-uiw-babel")
    async with running_app(services) as client:
        assert (await client.get("/v1/complaints")).status_code == 401
        unknown = await client.get("/v1/complaints", headers=bearer("adu_nope"))
        assert unknown.status_code == 401
        assert unknown.headers["content-type"] == "application/problem+json"
        for token in (analyst, liaison):
            post = await client.post("/v1/complaints", json=complaint(), headers=bearer(token))
            assert post.status_code == 403
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_partners_see_only_their_own(services: BackingServices) -> None:
    first = await services.token("partner", "posko-a")
    second = await services.token("partner", "portal-b")
    assistant = await services.token("assistant")
    async with running_app(services) as client:
        mine = await client.post("/v1/complaints", json=complaint(), headers=bearer(first))
        theirs = await client.post("/v1/complaints", json=complaint(), headers=bearer(second))
        other = await client.get(f"/v1/complaints/{theirs.json()['id']}", headers=bearer(first))
        assert other.status_code == 404
        missing = await client.get(f"/v1/complaints/{uuid.uuid4()}", headers=bearer(first))
        assert missing.status_code == 404
        listed = await client.get("/v1/complaints", headers=bearer(first))
        assert [c["id"] for c in listed.json()["items"]] == [mine.json()["id"]]
        everything = await client.get("/v1/complaints", headers=bearer(assistant))
        assert len(everything.json()["items"]) == 2


async def test_list_pages_with_cursor_and_filters(services: BackingServices) -> None:
    token = await services.token("partner")
    async with running_app(services) as client:
        ids = []
        for i in range(7):
            kind = "consultation" if i % 3 == 0 else "report"
            response = await client.post("/v1/complaints", json=complaint(kind=kind),
                                         headers=bearer(token))
            ids.append(response.json()["id"])
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/complaints", params=params,
                                     headers=bearer(token))).json()
            seen += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        recorded = await client.get("/v1/complaints", params={"status": "recorded"},
                                    headers=bearer(token))
        assert len(recorded.json()["items"]) == 3
        received = await client.get("/v1/complaints", params={"status": "received"},
                                    headers=bearer(token))
        assert len(received.json()["items"]) == 4
        bad = await client.get("/v1/complaints", params={"limit": 500}, headers=bearer(token))
        assert bad.status_code == 422
        # A status the domain does not have is a mistake, as an unknown kind is, not a filter
        # that quietly finds nothing.
        for query in ({"status": "bogus"}, {"status": "RECEIVED"}, {"kind": "bogus"}):
            unknown = await client.get("/v1/complaints", params=query, headers=bearer(token))
            assert unknown.status_code == 422, query
            assert unknown.json()["errors"][0]["field"] == f"/query/{next(iter(query))}"
        bad_cursor = await client.get("/v1/complaints", params={"cursor": "zzz"},
                                      headers=bearer(token))
        assert bad_cursor.status_code == 422


async def test_external_reference_conflict(services: BackingServices) -> None:
    token = await services.token("partner")
    other = await services.token("partner")
    async with running_app(services) as client:
        body = complaint(external_reference="POSKO-2022-0193")
        first = await client.post("/v1/complaints", json=body, headers=bearer(token))
        again = await client.post("/v1/complaints", json=body, headers=bearer(token))
        assert again.status_code == 409
        assert again.json()["complaint_id"] == first.json()["id"]
        elsewhere = await client.post("/v1/complaints", json=body, headers=bearer(other))
        assert elsewhere.status_code == 201


async def test_idempotency_key_replays_and_refuses_another_body(
    services: BackingServices,
) -> None:
    token = await services.token("partner")
    other = await services.token("partner")
    async with running_app(services) as client:
        key = {"Idempotency-Key": "kirim-0001"}
        first = await client.post("/v1/complaints", json=complaint(),
                                  headers={**bearer(token), **key})
        replay = await client.post("/v1/complaints", json=complaint(),
                                   headers={**bearer(token), **key})
        assert first.status_code == replay.status_code == 201
        assert replay.content == first.content
        assert replay.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        changed = await client.post("/v1/complaints", json=complaint(summary="lain"),
                                    headers={**bearer(token), **key})
        assert changed.status_code == 422
        scoped = await client.post("/v1/complaints", json=complaint(),
                                   headers={**bearer(other), **key})
        assert scoped.status_code == 201
        assert scoped.json()["id"] != first.json()["id"]
        listed = await client.get("/v1/complaints", headers=bearer(token))
        assert len(listed.json()["items"]) == 1


async def test_concurrent_requests_with_one_key_make_one_complaint(
    services: BackingServices,
) -> None:
    token = await services.token("partner")
    async with running_app(services) as client:
        headers = {**bearer(token), "Idempotency-Key": "serentak"}
        responses = await asyncio.gather(*[
            client.post("/v1/complaints", json=complaint(), headers=headers) for _ in range(8)
        ])
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {201, 409}
        assert codes.count(201) >= 1
        ids = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(ids) == 1
        listed = await client.get("/v1/complaints", headers=bearer(token))
        assert len(listed.json()["items"]) == 1


async def test_extreme_values_are_refused_clearly(services: BackingServices) -> None:
    admin = await services.token("admin")
    async with running_app(services) as client:
        extremes = {
            "/received_at": complaint(received_at="0001-01-01T00:00:00Z"),
            "/incident_date": complaint(incident_date="0001-01-01"),
        }
        for field, body in extremes.items():
            response = await client.post("/v1/complaints", json=body, headers=bearer(admin))
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["field"] == field
        future = await client.post("/v1/complaints",
                                   json=complaint(received_at="9999-12-31T23:59:59Z"),
                                   headers=bearer(admin))
        assert future.status_code == 422
        for field in ("summary", "description", "external_reference"):
            body = complaint(**{field: "x" * 60_000})
            response = await client.post("/v1/complaints", json=body, headers=bearer(admin))
            assert response.status_code == 422, field
            assert response.json()["errors"][0]["field"] == f"/{field}"
        nested = complaint(reporter={"name": "A", "address": "y" * 100_000})
        response = await client.post("/v1/complaints", json=nested, headers=bearer(admin))
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "/reporter/address"
        listed = await client.get("/v1/complaints", headers=bearer(admin))
        assert listed.json()["items"] == []


async def test_tracking_numbers_are_unique_and_increasing_within_each_year(
        services: BackingServices) -> None:
    """Concurrent submissions and imports into another year, each year numbered on its own."""
    admin = await services.token("admin")
    async with running_app(services) as client:
        async def submit(**overrides: str) -> str:
            response = await client.post("/v1/complaints", json=complaint(**overrides),
                                         headers=bearer(admin))
            assert response.status_code == 201, response.text
            return str(response.json()["tracking_number"])

        first = await submit()
        year = first.split("-")[1]
        current = await asyncio.gather(*(submit() for _ in range(30)))
        imported = await asyncio.gather(*(submit(received_at="2021-06-01T10:00:00+07:00")
                                          for _ in range(10)))
        later = await submit()

    numbers = [int(n.split("-")[2]) for n in [first, *current, later]]
    assert all(n.startswith(f"ADU-{year}-") for n in [first, *current, later])
    assert len(set(numbers)) == len(numbers)
    assert numbers[0] < min(numbers[1:-1])
    assert numbers[-1] > max(numbers[:-1])
    assert sorted(int(n.split("-")[2]) for n in imported) == list(range(1, 11))
    assert all(n.startswith("ADU-2021-") for n in imported)


def test_a_complaint_status_is_a_case_status_or_recorded() -> None:
    assert {s.value for s in ComplaintStatus} == {*(s.value for s in CaseStatus), RECORDED}
