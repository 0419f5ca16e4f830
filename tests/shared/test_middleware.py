"""The guards in front of every service (shared/middleware.py), tried as a client would."""

from __future__ import annotations

import json

from tests.support import BackingServices, bearer, complaint, query, running_app

JSON = {"content-type": "application/json"}


async def test_nan_and_infinity_are_malformed_json_on_every_json_body(
        services: BackingServices) -> None:
    """RFC 8259 has no NaN or Infinity: a body holding one as a value is the 400 for malformed
    JSON (API.md), not a 422 about a field it names, and nothing is stored. The words inside a
    string are text like any other."""
    partner = await services.token("partner")
    admin = await services.token("admin")
    valid = json.dumps(complaint())
    async with running_app(services) as client:
        refused = [
            ("PUT", "/v1/metrics/targets/2030-Q1", admin,
             b'{"closures": NaN, "examination_closures": 1}'),
            ("PUT", "/v1/metrics/targets/2030-Q1", admin,
             b'{"closures": 1, "examination_closures": -Infinity}'),
            ("POST", "/v1/complaints", partner, b"NaN"),
            ("POST", "/v1/complaints", partner, b"Infinity"),
            ("POST", "/v1/complaints", partner,
             valid[:-1].encode() + b', "reported_to_agency_first": Infinity}'),
            ("POST", "/v1/complaints", partner,
             valid.replace('"Siti Aminah"', '"Siti \\u0041minah"')[:-1].encode()
             + b', "x": [NaN]}'),
            ("POST", "/public/status", None,
             b'{"tracking_number": NaN, "access_code": "ABCD-EFGH-JKMN"}'),
            ("POST", "/v1/webhooks", partner,
             b'{"url": "https://posko.example.id/hook", "events": [], "n": NaN}'),
            # JSON is UTF-8 (RFC 8259 §8.1); in UTF-16 or UTF-32 the words above hide between
            # NUL bytes, and a complaint in them is refused whole.
            ("PUT", "/v1/metrics/targets/2030-Q1", admin,
             '{"closures": NaN, "examination_closures": 1}'.encode("utf-16")),
            ("PUT", "/v1/metrics/targets/2030-Q1", admin,
             '{"closures": 1, "examination_closures": Infinity}'.encode("utf-32-le")),
            ("POST", "/v1/complaints", partner, valid.encode("utf-16-le")),
        ]
        for method, path, token, body in refused:
            headers = {**JSON, **(bearer(token) if token else {})}
            response = await client.request(method, path, content=body, headers=headers)
            assert response.status_code == 400, (path, body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert "not valid JSON" in response.json()["detail"], response.text
        target = await client.get("/v1/metrics/targets/2030-Q1", headers=bearer(admin))
        assert target.status_code == 404

        worded = await client.post("/v1/complaints", headers=bearer(partner), json=complaint(
            summary="NaN Infinity -Infinity", description="Tagihan NaN rupiah, Infinity"))
        assert worded.status_code == 201, worded.text
        assert worded.json()["summary"] == "NaN Infinity -Infinity"
    rows = await query(services.database_url, "SELECT count(*) AS n FROM intake.complaints")
    assert rows[0]["n"] == 1
