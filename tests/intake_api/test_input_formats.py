"""Numbers and dates in the contract's own formats only: what pydantic's lax mode or Python's
``float`` would read into something else is refused."""

from __future__ import annotations

from tests.case_api.helpers import Tokens, act, case_at
from tests.intake_api.open311.test_open311 import FORM, complaint_count, errors_of
from tests.support import BackingServices, bearer, complaint, running_app


async def test_dates_and_times_are_strings_in_their_format(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        for field, value, token in [
                ("incident_date", 1646179200, tokens.partner),
                ("incident_date", "2022-03-02T00:00:00", tokens.partner),
                ("incident_date", "\uff12\uff10\uff12\uff12-03-02", tokens.partner),
                ("incident_date", 20220302, tokens.partner),
                ("received_at", 1646179200, tokens.admin),
                ("received_at", 1646179200.5, tokens.admin)]:
            response = await client.post("/v1/complaints", headers=bearer(token),
                                         json=complaint(**{field: value}))
            assert response.status_code == 422, (field, value, response.text)
            assert [e["field"] for e in response.json()["errors"]] == [f"/{field}"]
        kept = await client.post("/v1/complaints", headers=bearer(tokens.partner),
                                 json=complaint(incident_date="2022-03-02"))
        assert kept.status_code == 201, kept.text
        assert kept.json()["incident_date"] == "2022-03-02"
        case = await case_at(client, tokens, "in_examination")
        for field, token in (("due_at", tokens.assistant), ("effective_at", tokens.admin)):
            response = await act(client, token, case["id"], "request_clarification",
                                 note="Mohon penjelasan", **{field: 1646179200})
            assert response.status_code == 422, (field, response.text)
            assert response.json()["errors"][0]["field"] == f"/{field}"


async def test_open311_coordinates_are_ascii_decimals(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        for lat in ("\uff11", "-2\u0660", "1_0", "1e1", "0x1", "-2.13 16", "+-1", "."):
            response = await client.post("/open311/v2/requests.json",
                                         data={**FORM, "lat": lat, "api_key": partner})
            assert response.status_code == 400, (lat, response.text)
            assert any(e["description"].startswith("lat ") for e in errors_of(response)), lat
        assert await complaint_count(services) == 0
        for lat in ("-2.1316", "+2", "-2.", ".5", "0"):
            response = await client.post("/open311/v2/requests.json",
                                         data={**FORM, "lat": lat, "api_key": partner})
            assert response.status_code == 201, (lat, response.text)
