"""A request body in a content coding no service decodes is 415 with ``Accept-Encoding``
(RFC 9110 §15.5.16), never read as something else; the Open311 paths answer their error list."""

from __future__ import annotations

import gzip
import json

import httpx

from tests.intake_api.open311.test_errors import assert_error_list
from tests.intake_api.open311.test_open311 import FORM, FORM_HEADERS, complaint_count
from tests.support import BackingServices, bearer, complaint, running_app


async def test_coded_bodies_are_415_with_accept_encoding(services: BackingServices) -> None:
    partner = await services.token("partner")
    body = json.dumps(complaint()).encode()
    json_headers = {**bearer(partner), "content-type": "application/json"}
    async with running_app(services) as client:
        for coding, content in [("gzip", gzip.compress(body)), ("br", body),
                                ("GZIP", gzip.compress(body)), ("identity, gzip", body),
                                ("x-custom", body)]:
            response = await client.post("/v1/complaints", content=content,
                                         headers={**json_headers, "content-encoding": coding})
            assert response.status_code == 415, (coding, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["accept-encoding"] == "identity"
            problem = response.json()
            assert problem["status"] == 415
            assert "Content-Encoding" in problem["detail"], problem
        evidence = await client.post(
            f"/v1/complaints/{'0' * 8}-0000-4000-8000-{'0' * 12}/attachments",
            headers={**bearer(partner), "content-encoding": "gzip"},
            files={"file": ("a.pdf", gzip.compress(b"%PDF-1.4\n"), "application/pdf")})
        assert evidence.status_code == 415, evidence.text
        assert evidence.headers["accept-encoding"] == "identity"
        plain = await client.post("/v1/complaints", content=body,
                                  headers={**json_headers, "content-encoding": "identity"})
        assert plain.status_code == 201, plain.text
        form = str(httpx.QueryParams({**FORM, "api_key": partner})).encode()
        for fmt in ("json", "xml"):
            response = await client.post(f"/open311/v2/requests.{fmt}",
                                         content=gzip.compress(form),
                                         headers={**FORM_HEADERS, "content-encoding": "gzip"})
            said = assert_error_list(response, 415, fmt)
            assert "Content-Encoding" in said
            assert response.headers["accept-encoding"] == "identity"
    # Only the identity-coded complaint was recorded.
    assert await complaint_count(services) == 1
