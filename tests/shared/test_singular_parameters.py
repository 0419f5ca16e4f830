"""Under ``/v1/`` every query parameter is singular: one given twice is a 422 naming it, not a
silent choice of the last."""

from __future__ import annotations

from tests.support import BackingServices, bearer, running_app


async def test_a_repeated_parameter_is_422_naming_it(services: BackingServices) -> None:
    analyst = await services.token("analyst")
    partner = await services.token("partner")
    async with running_app(services) as client:
        for path, token, name in [
                ("/v1/metrics/summary?period=2022-Q1&period=2023", analyst, "period"),
                ("/v1/metrics/monthly?from=2022-01-01&to=2022-03-31&to=2022-12-31", analyst,
                 "to"),
                ("/v1/complaints?status=received&limit=5&status=closed", partner, "status"),
                ("/v1/complaints?limit=5&limit=200", partner, "limit")]:
            response = await client.get(path, headers=bearer(token))
            assert response.status_code == 422, (path, response.text)
            assert response.json()["errors"] == [{
                "field": f"/query/{name}", "message": response.json()["errors"][0]["message"]}]
        once = await client.get("/v1/metrics/summary?period=2022-Q1", headers=bearer(analyst))
        assert once.status_code == 200, once.text
        both = await client.get("/v1/complaints?status=received&limit=5", headers=bearer(partner))
        assert both.status_code == 200, both.text
