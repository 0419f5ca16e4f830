"""How validation failures read to a client: status and words, for every JSON body."""

from __future__ import annotations

import uuid

from tests.support import BackingServices, bearer, complaint, running_app

JSON = {"content-type": "application/json"}


async def test_an_empty_json_body_is_malformed_json_everywhere(services: BackingServices) -> None:
    """API.md: 400 for malformed JSON. An empty body is no JSON document, as ``/public/status``
    has always said; a missing body with no content type is the same."""
    admin = await services.token("admin")
    somewhere = uuid.uuid4()
    async with running_app(services) as client:
        for method, path in [("POST", "/v1/complaints"), ("POST", "/v1/webhooks"),
                             ("POST", f"/v1/cases/{somewhere}/transitions"),
                             ("PUT", "/v1/metrics/targets/2026"), ("POST", "/public/status")]:
            for headers in (JSON, {}):
                answer = await client.request(method, path, content=b"",
                                              headers={**headers, **bearer(admin)})
                assert answer.status_code == 400, (method, path, headers, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.json()["status"] == 400


async def test_too_long_text_is_measured_in_characters(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        body = complaint()
        body["reporter"]["name"] = "S" * 201
        answer = await client.post("/v1/complaints", json=body, headers=bearer(partner))
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [
            {"field": "/reporter/name", "message": "must have at most 200 characters, not 201"}]
