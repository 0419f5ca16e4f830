"""The agency registry: named at first sighting or by staff, never renamed by partners."""

from __future__ import annotations

from tests.case_api.helpers import AGENCY, Tokens, open_case, open_cases, post_complaint
from tests.support import BackingServices, bearer, complaint, eventually, running_app

OFFICIAL = "PT PLN (Persero) UIW Bangka Belitung"


async def test_partners_cannot_rename_an_agency(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    other_partner = await services.token("partner", "lapor-nasional")
    async with running_app(services) as client:
        await open_case(client, tokens, reported_agency={"code": AGENCY, "name": OFFICIAL})
        renamed = "<script>alert(1)</script> PLN palsu"
        for token in (tokens.partner, other_partner):
            posted = await client.post("/v1/complaints", headers=bearer(token), json=complaint(
                reported_agency={"code": AGENCY, "name": renamed}))
            assert posted.status_code == 201, posted.text

        async def counted() -> None:
            one = await client.get(f"/v1/agencies/{AGENCY}", headers=bearer(tokens.assistant))
            assert one.json()["complaints"] == 3

        await eventually(counted)
        agency = (await client.get(f"/v1/agencies/{AGENCY}",
                                   headers=bearer(tokens.assistant))).json()
        assert agency["name"] == OFFICIAL
        listed = (await client.get("/v1/agencies", headers=bearer(tokens.analyst))).json()
        assert [a["name"] for a in listed["items"]] == [OFFICIAL]


async def test_staff_name_agencies(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        await open_cases(client, tokens, 1, reported_agency={"code": AGENCY, "name": "PLN"})
        named = await client.put(f"/v1/agencies/{AGENCY}", json={"name": OFFICIAL},
                                 headers=bearer(tokens.assistant))
        assert named.status_code == 200, named.text
        assert named.json()["name"] == OFFICIAL
        assert named.json()["total_cases"] == 1
        await post_complaint(client, tokens, reported_agency={"code": AGENCY, "name": "PLN X"})

        registered = await client.put("/v1/agencies/samsat-sungailiat",
                                      json={"name": "UPTD Samsat Sungailiat"},
                                      headers=bearer(tokens.admin))
        assert registered.status_code == 201, registered.text
        assert registered.headers["location"] == "/v1/agencies/samsat-sungailiat"
        assert registered.json() == {"code": "samsat-sungailiat",
                                     "name": "UPTD Samsat Sungailiat", "open_cases": 0,
                                     "total_cases": 0, "complaints": 0}
        await open_case(client, tokens, reported_agency={"code": "samsat-sungailiat",
                                                         "name": "samsat"})
        seen = (await client.get("/v1/agencies/samsat-sungailiat",
                                 headers=bearer(tokens.assistant))).json()
        assert (seen["name"], seen["complaints"]) == ("UPTD Samsat Sungailiat", 1)

        for token in (tokens.partner, tokens.liaison, tokens.analyst):
            denied = await client.put(f"/v1/agencies/{AGENCY}", json={"name": "x"},
                                      headers=bearer(token))
            assert denied.status_code == 403
        for code, body in (("PLN-UIW-BABEL", {"name": "x"}), (AGENCY, {"name": "\u200b"}),
                           (AGENCY, {"name": ""}), (AGENCY, {"name": "x", "extra": 1}),
                           (AGENCY, {})):
            refused = await client.put(f"/v1/agencies/{code}", json=body,
                                       headers=bearer(tokens.assistant))
            assert refused.status_code == 422, (code, body, refused.text)
        assert (await client.get(f"/v1/agencies/{AGENCY}", headers=bearer(tokens.assistant))
                ).json()["name"] == OFFICIAL

        spec = (await client.get("/openapi.json")).json()
        assert "put" in spec["paths"]["/v1/agencies/{code}"]
