"""Subscriptions: per caller, a secret shown once, clear problems for bad input."""

from __future__ import annotations

import base64
from typing import Any

from tests.support import BackingServices, bearer, running_app

LOOPBACK: dict[str, Any] = {"webhook_allow_http": True, "webhook_allow_private": True}


async def test_a_subscription_shows_its_secret_once(services: BackingServices) -> None:
    partner = await services.token("partner", "posko-pln")
    other = await services.token("partner", "posko-lain")
    async with running_app(services, **LOOPBACK) as client:
        created = await client.post("/v1/webhooks", headers=bearer(partner), json={
            "url": "http://127.0.0.1:9/hooks", "description": "Posko PLN",
            "events": ["complaint.received", "complaint.status_changed"]})
        assert created.status_code == 201, created.text
        body = created.json()
        assert created.headers["location"] == f"/v1/webhooks/{body['id']}"
        assert body["secret"].startswith("whsec_")
        assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24
        assert body["events"] == ["complaint.received", "complaint.status_changed"]
        assert body["active"] is True

        one = await client.get(f"/v1/webhooks/{body['id']}", headers=bearer(partner))
        assert one.status_code == 200
        assert "secret" not in one.json()
        listed = (await client.get("/v1/webhooks", headers=bearer(partner))).json()
        assert [s["id"] for s in listed["items"]] == [body["id"]]
        assert body["secret"] not in str(listed)
        again = await client.get(f"/v1/webhooks/{body['id']}/secret", headers=bearer(partner))
        assert again.status_code == 410
        assert again.headers["content-type"] == "application/problem+json"

        # Another caller sees none of it.
        assert (await client.get("/v1/webhooks", headers=bearer(other))).json()["items"] == []
        for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries")):
            response = await client.request(method, f"/v1/webhooks/{body['id']}{path}",
                                            headers=bearer(other))
            assert response.status_code == 404, (method, path)

        gone = await client.delete(f"/v1/webhooks/{body['id']}", headers=bearer(partner))
        assert gone.status_code == 204
        missing = await client.get(f"/v1/webhooks/{body['id']}", headers=bearer(partner))
        assert missing.status_code == 404


async def test_bad_subscriptions_are_clear_problems(services: BackingServices) -> None:
    partner = await services.token("partner")
    assistant = await services.token("assistant")
    async with running_app(services) as client:
        def body(**overrides: object) -> dict[str, object]:
            return {"url": "https://hooks.example.id/aduan", "events": ["complaint.received"],
                    **overrides}

        cases = {
            "/events/1": body(events=["complaint.received", "complaint.exploded"]),
            "/events": body(events=[]),
            "/url": body(url="ftp://hooks.example.id/"),
            "/secret": body(secret="whsec_bWluZQ=="),
        }
        refused_urls = ["http://hooks.example.id/aduan", "https://127.0.0.1/hooks",
                        "https://localhost/hooks", "https://169.254.169.254/latest",
                        "https://10.1.2.3/x", "https://[::1]/x", "https://user:pw@example.id/",
                        "https://[::ffff:127.0.0.1]/x", "not a url", "https:///nohost",
                        # Loopback behind NAT64 and 6to4.
                        "https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/"]
        for field, payload in cases.items():
            response = await client.post("/v1/webhooks", json=payload, headers=bearer(partner))
            assert response.status_code == 422, (field, response.text)
            assert response.json()["errors"][0]["field"] == field
        for url in refused_urls:
            response = await client.post("/v1/webhooks", json=body(url=url),
                                         headers=bearer(partner))
            assert response.status_code == 422, (url, response.text)
            assert response.json()["errors"][0]["field"] == "/url", url
        # An agency's clarification requests go to liaisons, not partners.
        wrong = await client.post("/v1/webhooks", json=body(events=["case.awaiting_agency"]),
                                  headers=bearer(partner))
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["field"] == "/events/0"
        # A name that does not resolve yet is accepted: every delivery checks it again.
        later = await client.post("/v1/webhooks", json=body(url="https://hooks.invalid/x"),
                                  headers=bearer(partner))
        assert later.status_code == 201, later.text
        forbidden = await client.post("/v1/webhooks", json=body(), headers=bearer(assistant))
        assert forbidden.status_code == 403
        bad_status = await client.get(
            "/v1/webhooks/00000000-0000-0000-0000-000000000000/deliveries?status=lost",
            headers=bearer(partner))
        assert bad_status.status_code in (404, 422)


async def test_subscriptions_are_listed_in_pages_newest_first(services: BackingServices) -> None:
    partner = await services.token("partner", "posko-pln")
    async with running_app(services, **LOOPBACK) as client:
        made = []
        for n in range(5):
            created = await client.post("/v1/webhooks", headers=bearer(partner), json={
                "url": f"http://127.0.0.1:9/hooks/{n}", "events": ["complaint.received"]})
            assert created.status_code == 201, created.text
            made.append(created.json()["id"])
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = await client.get("/v1/webhooks", params=params, headers=bearer(partner))
            assert page.status_code == 200, page.text
            body = page.json()
            assert set(body) == {"items", "next_cursor"}
            seen += [s["id"] for s in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == made[::-1]
        deliveries = await client.get(f"/v1/webhooks/{made[0]}/deliveries",
                                      params={"limit": 1}, headers=bearer(partner))
        assert deliveries.json() == {"items": [], "next_cursor": None}
        for tampered in ("not-a-cursor", "czox", "aToxMjM", "czoxMjN8eHl6"):
            refused = await client.get("/v1/webhooks", params={"cursor": tampered},
                                       headers=bearer(partner))
            assert refused.status_code == 422, (tampered, refused.text)
            assert refused.json()["errors"][0]["field"] == "/query/cursor"
        for limit in (0, 201):
            refused = await client.get("/v1/webhooks", params={"limit": limit},
                                       headers=bearer(partner))
            assert refused.status_code == 422, limit


async def test_a_url_whose_host_is_no_name_is_refused_on_url(services: BackingServices) -> None:
    """Empty or over-long DNS labels: the resolver cannot even encode them."""
    partner = await services.token("partner")
    async with running_app(services) as client:
        for url in ("https://.com/", "https://a..b/x", f"https://{'a' * 300}.example.id/",
                    f"https://{'b' * 64}.id/", "https://hooks..example.id:8443/x"):
            response = await client.post(
                "/v1/webhooks", json={"url": url, "events": ["complaint.received"]},
                headers=bearer(partner))
            assert response.status_code == 422, (url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in response.json()["errors"]] == ["/url"], url
