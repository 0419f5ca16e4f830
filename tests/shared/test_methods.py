"""HEAD wherever GET is, and 405 answers that name every method of the path (RFC 9110)."""

from __future__ import annotations

from tests.support import BackingServices, bearer, complaint, running_app


async def test_head_answers_as_get_without_the_body(services: BackingServices) -> None:
    partner = await services.token("partner")
    analyst = await services.token("analyst")
    async with running_app(services) as client:
        created = await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))
        assert created.status_code == 201
        for path, token in [("/v1/complaints", partner),
                            (f"/v1/complaints/{created.json()['id']}", partner),
                            ("/healthz", None),
                            ("/v1/metrics/targets/2022-Q1", analyst),
                            ("/v1/metrics/monthly?from=2022-01-01&to=2022-03-31&format=csv",
                             analyst)]:
            headers = bearer(token) if token else {}
            got = await client.get(path, headers=headers)
            head = await client.head(path, headers=headers)
            assert head.status_code == got.status_code, (path, head.text)
            assert head.content == b"", path
            assert head.headers.get("content-type") == got.headers.get("content-type"), path
            assert head.headers.get("content-length") == got.headers.get("content-length"), path
        # Without a token, HEAD is refused as GET is.
        assert (await client.head("/v1/complaints")).status_code == 401


async def test_a_405_names_every_method_of_the_path(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        for method, path, allow in [
            ("DELETE", "/v1/complaints", "GET, HEAD, POST"),
            ("PUT", "/v1/complaints", "GET, HEAD, POST"),
            ("GET", "/v1/cases/00000000-0000-4000-8000-000000000000/transitions", "POST"),
            ("HEAD", "/v1/cases/00000000-0000-4000-8000-000000000000/transitions", "POST"),
            ("POST", "/healthz", "GET, HEAD"),
            ("DELETE", "/v1/metrics/targets/2022-Q1", "GET, HEAD, PUT"),
            ("POST", "/assets/swagger-ui/swagger-ui.css", "GET, HEAD"),
        ]:
            response = await client.request(method, path, headers=bearer(partner))
            assert response.status_code == 405, (method, path, response.text)
            assert response.headers["allow"] == allow, (method, path)
            if method != "HEAD":
                assert response.headers["content-type"] == "application/problem+json"
