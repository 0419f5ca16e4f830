"""Times at the edges of what a client can write (year 1, year 9999, offsets up to ±23:59) are
answered with the contract's errors or stored right, never a 500."""

from __future__ import annotations

from typing import Any

from tests.case_api.helpers import Tokens, act, case_at
from tests.intake_api.open311.test_open311 import errors_of
from tests.support import BackingServices, bearer, complaint, query, running_app

# Each lies outside what a timestamp can hold once it is turned to UTC.
PAST_THE_EDGES = ["0001-01-01T00:00:00+10:00", "0001-01-01T00:00:00+00:01",
                  "9999-12-31T23:59:59-10:00", "9999-12-31T23:59:59-00:01"]


async def test_open311_date_filters_past_the_calendar_are_error_lists(
        services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        for fmt in ("json", "xml"):
            for name in ("start_date", "end_date"):
                for value in PAST_THE_EDGES:
                    response = await client.get(f"/open311/v2/requests.{fmt}",
                                                params={"api_key": partner, name: value})
                    assert response.status_code == 400, (fmt, name, value, response.text)
                    errors = errors_of(response)
                    assert [e["code"] for e in errors] == [400]
                    assert name in errors[0]["description"]
            # The calendar's own ends, in UTC, are filters like any other.
            whole = await client.get(f"/open311/v2/requests.{fmt}", params={
                "api_key": partner, "start_date": "0001-01-01T00:00:00Z",
                "end_date": "9999-12-31T23:59:59Z"})
            assert whole.status_code == 200, whole.text


async def test_received_at_in_any_rfc3339_offset_is_stored_in_utc(
        services: BackingServices) -> None:
    admin = await services.token("admin")
    async with running_app(services) as client:
        for offset, utc in [("-23:59", "2022-03-04T09:14:00Z"), ("+16:00", "2022-03-02T17:15:00Z"),
                            ("+23:59", "2022-03-02T09:16:00Z"), ("+15:59", "2022-03-02T17:16:00Z")]:
            response = await client.post(
                "/v1/complaints", headers=bearer(admin),
                json=complaint(received_at=f"2022-03-03T09:15:00{offset}",
                               external_reference=f"REF{offset}"))
            assert response.status_code == 201, (offset, response.text)
            assert response.json()["received_at"] == utc
        for value in PAST_THE_EDGES:
            response = await client.post("/v1/complaints", headers=bearer(admin),
                                         json=complaint(received_at=value))
            assert response.status_code == 422, (value, response.text)
            assert response.json()["errors"][0]["field"] == "/received_at"
    rows = await query(services.database_url,
                       "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS t"
                       " FROM intake.complaints ORDER BY seq")
    assert [r["t"] for r in rows] == ["2022-03-04 09:14", "2022-03-02 17:15",
                                      "2022-03-02 09:16", "2022-03-02 17:16"]


async def test_transition_times_past_the_calendar_are_422(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await case_at(client, tokens, "in_examination")
        for value in PAST_THE_EDGES:
            for field, token in (("due_at", tokens.assistant), ("effective_at", tokens.admin)):
                response = await act(client, token, case["id"], "request_clarification",
                                     note="Mohon penjelasan", **{field: value})
                assert response.status_code == 422, (field, value, response.text)
                assert response.json()["errors"][0]["field"] == f"/{field}"
        far: dict[str, Any] = {"note": "Mohon penjelasan", "due_at": "9999-12-31T23:59:59Z"}
        response = await act(client, tokens.assistant, case["id"], "request_clarification", **far)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "/due_at"
        latest = {**far, "due_at": "2200-12-31T16:59:59Z"}
        response = await act(client, tokens.assistant, case["id"], "request_clarification",
                             **latest)
        assert response.status_code == 200, response.text
        assert response.json()["due_at"] == "2200-12-31T16:59:59Z"
        for path in (f"/v1/cases/{case['id']}", f"/v1/complaints/{case['id']}",
                     "/v1/metrics/summary?period=2200", "/dashboard?period=2200"):
            read = await client.get(path, headers=bearer(tokens.admin))
            assert read.status_code == 200, (path, read.text)
