"""Open311 GeoReport v2 as a civic client speaks it: form-encoded posts, XML read with a real
XML parser (defusedxml), JSON read as JSON."""

from __future__ import annotations

import logging
from typing import Any
from xml.etree.ElementTree import Element

import httpx
import pytest
from defusedxml import ElementTree

from shared.auth import revoke_token
from tests.support import BackingServices, bearer, complaint, eventually, query, running_app

# Every element GeoReport v2 lists for a service and for a service request.
SERVICE_FIELDS = ("service_code", "service_name", "description", "metadata", "type", "keywords",
                  "group")
REQUEST_FIELDS = ("service_request_id", "status", "status_notes", "service_name",
                  "service_code", "description", "agency_responsible", "service_notice",
                  "requested_datetime", "updated_datetime", "expected_datetime", "address",
                  "address_id", "zipcode", "lat", "long", "media_url")
FORM = {"service_code": "electricity", "lat": "-2.1316", "long": "106.1169",
        "address_string": "Jl. Jend. Sudirman, Pangkalpinang",
        "description": "Lampu jalan padam sejak seminggu; listrik rumah padam tiap malam.",
        "first_name": "Siti", "last_name": "Aminah", "email": "siti@example.id",
        "phone": "+62811000", "media_url": "https://foto.example.id/padam.jpg",
        "attribute[agency]": "pln-uiw-babel"}
FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded"}


def xml(response: httpx.Response) -> Element:
    assert response.headers["content-type"].startswith("text/xml"), response.headers
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root: Element = ElementTree.fromstring(response.content)
    return root


def fields(element: Element) -> dict[str, str]:
    return {child.tag: child.text or "" for child in element}


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    if response.headers["content-type"].startswith("text/xml"):
        root = xml(response)
        assert root.tag == "errors"
        found = [fields(e) for e in root]
        assert all(e.keys() == {"code", "description"} for e in found)
        return [{"code": int(e["code"]), "description": e["description"]} for e in found]
    body: list[dict[str, Any]] = response.json()
    assert all(e.keys() == {"code", "description"} for e in body)
    return body


async def complaint_count(services: BackingServices) -> int:
    rows = await query(services.database_url,
                       "SELECT (SELECT count(*) FROM intake.complaints)"
                       " + (SELECT count(*) FROM intake.open311_requests)")
    return int(rows[0][0])


async def test_an_agency_given_by_code_alone_takes_the_name_complaints_gave_it(
    services: BackingServices,
) -> None:
    partner = await services.token("partner", "fixmystreet-babel")
    async with running_app(services) as client:
        # The intake reads only its own tables: the name comes from a complaint filed earlier.
        named = await client.post("/v1/complaints", headers=bearer(partner), json=complaint(
            reported_agency={"code": "pdam-tirta-pinang",
                             "name": "Perumda Air Minum Tirta Pinang"}))
        assert named.status_code == 201, named.text
        water = {**FORM, "service_code": "water", "api_key": partner,
                 "attribute[agency]": "pdam-tirta-pinang"}
        by_code = await client.post("/open311/v2/requests.json", data=water)
        assert by_code.status_code == 201, by_code.text
        by_name = await client.post("/open311/v2/requests.json", data={
            **water, "attribute[agency_name]": "PDAM Pangkalpinang"})
        assert by_name.status_code == 201, by_name.text
        unknown = await client.post("/open311/v2/requests.json", data={
            **water, "attribute[agency]": "pdam-belum-dikenal"})
        assert unknown.status_code == 201, unknown.text

        async def responsible(posted: httpx.Response) -> str:
            number = posted.json()[0]["service_request_id"]
            answer = await client.get(f"/open311/v2/requests/{number}.json",
                                      params={"api_key": partner})
            return str(answer.json()[0]["agency_responsible"])

        assert await responsible(by_code) == "Perumda Air Minum Tirta Pinang"
        # A name the client gives is the complaint's own, as in the JSON API.
        assert await responsible(by_name) == "PDAM Pangkalpinang"
        # An agency nobody has named yet goes by its code.
        assert await responsible(unknown) == "pdam-belum-dikenal"


async def test_services_in_both_formats(services: BackingServices) -> None:
    async with running_app(services) as client:
        root = xml(await client.get("/open311/v2/services.xml"))
        assert root.tag == "services"
        listed = [fields(s) for s in root.findall("service")]
        assert len(listed) == 13
        for service in listed:
            assert set(SERVICE_FIELDS) <= service.keys()
            assert all(service[name] for name in ("service_code", "service_name", "group"))
            assert service["metadata"] == "false"
            assert service["type"] == "realtime"
        electricity = next(s for s in listed if s["service_code"] == "electricity")
        assert electricity["service_name"] == "Listrik"

        as_json = (await client.get("/open311/v2/services.json")).json()
        assert [s["service_code"] for s in as_json] == [s["service_code"] for s in listed]
        assert all(s["metadata"] is False and set(SERVICE_FIELDS) <= s.keys() for s in as_json)
        unknown = await client.get("/open311/v2/services.yaml")
        assert unknown.status_code == 404
        assert errors_of(unknown)[0]["code"] == 404


async def test_a_report_posted_as_a_form_becomes_a_complaint_and_is_followed(
    services: BackingServices,
) -> None:
    partner = await services.token("partner", "fixmystreet-babel")
    other = await services.token("partner", "lapor")
    assistant = await services.token("assistant")
    async with running_app(services) as client:
        posted = await client.post("/open311/v2/requests.xml", data={**FORM, "api_key": partner,
                                                                     "jurisdiction_id": "babel"})
        assert posted.status_code == 201, posted.text
        root = xml(posted)
        assert root.tag == "service_requests"
        created = fields(root.find("request"))  # type: ignore[arg-type]
        assert created.keys() == {"service_request_id", "service_notice", "account_id"}
        number = created["service_request_id"]
        assert number.startswith("ADU-")
        assert created["service_notice"]
        assert created["account_id"] == ""

        found = await client.get(f"/v1/complaints?tracking_number={number}",
                                 headers=bearer(assistant))
        complaint = next(c for c in found.json()["items"] if c["tracking_number"] == number)
        assert complaint["kind"] == "report"
        assert complaint["channel"] == "website"
        assert complaint["substance"] == "electricity"
        assert complaint["submitted_by"] == "fixmystreet-babel"
        assert complaint["reporter"]["name"] == "Siti Aminah"
        assert complaint["reporter"]["email"] == "siti@example.id"
        assert complaint["reported_agency"]["code"] == "pln-uiw-babel"
        assert complaint["description"] == FORM["description"]
        assert complaint["location"]["place"] == FORM["address_string"]

        # The api_key in the query string, as some clients send it; no agency named.
        unnamed = {k: v for k, v in FORM.items() if k != "attribute[agency]"}
        second = await client.post(f"/open311/v2/requests.json?api_key={partner}", data=unnamed)
        assert second.status_code == 201, second.text
        [answer] = second.json()
        assert answer["account_id"] is None
        second_number = answer["service_request_id"]

        one = await client.get(f"/open311/v2/requests/{number}.xml?api_key={partner}")
        [request] = xml(one).findall("request")
        record = fields(request)
        assert set(REQUEST_FIELDS) <= record.keys()
        assert record["service_request_id"] == number
        assert record["status"] == "open"
        assert record["service_code"] == "electricity"
        assert record["service_name"] == "Listrik"
        assert record["agency_responsible"] == "pln-uiw-babel"
        assert record["requested_datetime"].endswith("Z")
        assert record["updated_datetime"]
        assert record["status_notes"] == "received"
        assert float(record["lat"]) == pytest.approx(-2.1316)
        assert float(record["long"]) == pytest.approx(106.1169)
        assert record["address"] == FORM["address_string"]
        assert record["media_url"] == FORM["media_url"]
        assert record["description"] == FORM["description"]

        as_json = (await client.get(f"/open311/v2/requests/{second_number}.json",
                                    params={"api_key": partner})).json()
        assert as_json[0]["agency_responsible"] == "Belum ditentukan (unassigned)"
        assert set(REQUEST_FIELDS) <= as_json[0].keys()

        # The assistant closes the first at verification: the client sees it closed.
        case_id = complaint["id"]
        await eventually(lambda: _case_exists(client, assistant, case_id))
        closed = await client.post(f"/v1/cases/{case_id}/transitions", headers=bearer(assistant),
                                   json={"action": "reject", "reason": "out_of_jurisdiction"})
        assert closed.status_code == 200, closed.text

        async def closed_for_the_client() -> dict[str, str]:
            answer = await client.get(f"/open311/v2/requests.xml?api_key={partner}"
                                      "&status=closed")
            records = [fields(r) for r in xml(answer).findall("request")]
            assert [r["service_request_id"] for r in records] == [number]
            return records[0]

        record = await eventually(closed_for_the_client)
        assert record["status"] == "closed"
        assert record["status_notes"] == "out_of_jurisdiction"
        assert record["expected_datetime"] == ""

        # The second waits for the reporter's documents: the client sees when they are due.
        second_id = next(c["id"] for c in (await client.get(
            "/v1/complaints", headers=bearer(assistant))).json()["items"]
            if c["tracking_number"] == second_number)
        await eventually(lambda: _case_exists(client, assistant, second_id))
        waiting = await client.post(f"/v1/cases/{second_id}/transitions",
                                    headers=bearer(assistant),
                                    json={"action": "request_completion", "note": "KTP?"})
        assert waiting.status_code == 200, waiting.text
        due_at = waiting.json()["due_at"]

        async def expected_for_the_client() -> None:
            answer = await client.get(f"/open311/v2/requests/{second_number}.json",
                                      params={"api_key": partner})
            [record] = answer.json()
            assert record["status"] == "open"
            assert record["status_notes"] == "awaiting_completion"
            assert record["expected_datetime"] == due_at

        await eventually(expected_for_the_client)

        listed = await client.get("/open311/v2/requests.json", params={
            "api_key": partner, "status": "open", "service_code": "electricity,water",
            "start_date": "2020-01-01T00:00:00+07:00"})
        assert [r["service_request_id"] for r in listed.json()] == [second_number]
        both = await client.get("/open311/v2/requests.json", params={
            "api_key": partner, "service_request_id": f"{number},{second_number}"})
        assert {r["service_request_id"] for r in both.json()} == {number, second_number}
        later = await client.get("/open311/v2/requests.json", params={
            "api_key": partner, "start_date": "2999-01-01T00:00:00Z"})
        assert later.json() == []

        # Another partner's requests do not exist for this one.
        hidden = await client.get(f"/open311/v2/requests/{number}.xml?api_key={other}")
        assert hidden.status_code == 404
        assert errors_of(hidden)[0]["code"] == 404
        none = await client.get(f"/open311/v2/requests.json?api_key={other}")
        assert none.json() == []


async def _case_exists(client: httpx.AsyncClient, token: str, case_id: str) -> None:
    assert (await client.get(f"/v1/cases/{case_id}", headers=bearer(token))).status_code == 200


async def test_bad_requests_are_error_lists_and_store_nothing(services: BackingServices) -> None:
    partner = await services.token("partner")
    analyst = await services.token("analyst")
    revoked = await services.token("partner", "gone")
    async with running_app(services) as client:
        database = client.app.state.runtime.database  # type: ignore[attr-defined]
        async with database.transaction() as session:
            await revoke_token(session, "gone")
        cases: dict[str, tuple[dict[str, str], int, str]] = {
            "unknown service": ({**FORM, "service_code": "potholes"}, 400, "service_code"),
            "no service": ({k: v for k, v in FORM.items() if k != "service_code"}, 400,
                           "service_code"),
            "latitude 91": ({**FORM, "lat": "91"}, 400, "lat"),
            "longitude -180.5": ({**FORM, "long": "-180.5"}, 400, "long"),
            "latitude NaN": ({**FORM, "lat": "nan"}, 400, "lat"),
            "latitude words": ({**FORM, "lat": "south"}, 400, "lat"),
            "lat without long": ({k: v for k, v in FORM.items() if k != "long"}, 400, "long"),
            "no description": ({**FORM, "description": "  "}, 400, "description"),
            "no location": ({k: v for k, v in FORM.items()
                             if k not in {"lat", "long", "address_string"}}, 400, "address"),
            "bad agency": ({**FORM, "attribute[agency]": "PLN Babel!"}, 400, "agency"),
            "NUL in description": ({**FORM, "description": "a\x00b"}, 400, "description"),
            "not a media url": ({**FORM, "media_url": "javascript:alert(1)"}, 400, "media_url"),
            # Text that shows nothing is no text (API.md "Under load and abuse").
            "invisible location": ({**{k: v for k, v in FORM.items() if k not in {"lat", "long"}},
                                    "address_string": "\u200b\ufeff"}, 400, "address"),
            "invisible description": ({**FORM, "description": "\u200b\u200c"}, 400,
                                      "description"),
        }
        for fmt in ("xml", "json"):
            for what, (form, status, mention) in cases.items():
                response = await client.post(f"/open311/v2/requests.{fmt}",
                                             data={**form, "api_key": partner})
                assert response.status_code == status, (what, response.text)
                errors = errors_of(response)
                assert errors, what
                assert all(e["code"] == status for e in errors), what
                assert any(mention in e["description"] for e in errors), (what, errors)
            for key, status in [(None, 403), ("adu_not-a-token", 403), (analyst, 403),
                                (revoked, 403)]:
                form = {**FORM} if key is None else {**FORM, "api_key": key}
                response = await client.post(f"/open311/v2/requests.{fmt}", data=form)
                assert response.status_code == status, (key, response.text)
                assert errors_of(response)[0]["code"] == 403
            read = await client.get(f"/open311/v2/requests.{fmt}")
            assert read.status_code == 403
            assert errors_of(read)[0]["code"] == 403
            bad_filter = await client.get(f"/open311/v2/requests.{fmt}", params={
                "api_key": partner, "status": "pending", "start_date": "yesterday"})
            assert bad_filter.status_code == 400
            assert len(errors_of(bad_filter)) == 2
        json_body = await client.post("/open311/v2/requests.json", json=FORM,
                                      params={"api_key": partner})
        assert json_body.status_code == 415  # not a form (tests/.../test_errors.py)
        # Bytes that are not UTF-8 are refused, not stored as replacement characters.
        for broken in (b"description=%ED%A0%80", b"description=Lampu+padam+%FF",
                       b"first_name=%C3", b"%FF=x"):
            encoded = httpx.QueryParams({**FORM, "api_key": partner, "description": "x"})
            response = await client.post("/open311/v2/requests.json",
                                         content=str(encoded).encode() + b"&" + broken,
                                         headers=FORM_HEADERS)
            assert response.status_code == 400, (broken, response.text)
            assert "UTF-8" in errors_of(response)[0]["description"], broken
        # The same in a multipart form, where a file part's bytes are its own business.
        photo = ("padam.jpg", b"\xff\xd8\xff\xe0", "image/jpeg")
        for text in (b"Lampu padam \xed\xa0\x80", b"\xe9t\xe9"):
            response = await client.post(
                "/open311/v2/requests.json", data={**FORM, "api_key": partner},
                files={"description": (None, text), "media": photo})
            assert response.status_code == 400, (text, response.text)
            assert errors_of(response)[0]["description"].startswith("description: "), text
    assert await complaint_count(services) == 0


async def test_a_multipart_form_keeps_its_text_as_sent(services: BackingServices) -> None:
    partner = await services.token("partner")
    text = "Lampu padam di Jalan Mérdeka ☀"
    async with running_app(services) as client:
        accepted = await client.post(
            "/open311/v2/requests.json",
            data={**{k: v for k, v in FORM.items() if k != "description"}, "api_key": partner},
            files={"description": (None, text.encode()),
                   "media": ("padam.jpg", b"\xff\xd8\xff\xe0", "image/jpeg")})
        assert accepted.status_code == 201, accepted.text
    rows = await query(services.database_url, "SELECT description FROM intake.complaints")
    assert [r["description"] for r in rows] == [text]


async def test_a_name_that_shows_nothing_is_no_name(services: BackingServices) -> None:
    """Invisible first and last names count as missing ones, as in the JSON API."""
    partner = await services.token("partner")
    anonymous = {k: v for k, v in FORM.items()
                 if k not in {"first_name", "last_name", "email", "phone"}}
    async with running_app(services) as client:
        for form in (anonymous, {**anonymous, "first_name": "\u200b",
                                 "last_name": "\ufeff\u2060 "}):
            response = await client.post("/open311/v2/requests.json",
                                         data={**form, "api_key": partner})
            assert response.status_code == 201, response.text
        named = await client.post("/open311/v2/requests.json",
                                  data={**anonymous, "first_name": "\u200b", "last_name": "Aminah",
                                        "api_key": partner})
        assert named.status_code == 201, named.text
    rows = await query(services.database_url,
                       "SELECT reporter->>'name' AS name FROM intake.complaints ORDER BY seq")
    assert [r["name"] for r in rows] == ["Pelapor tanpa nama", "Pelapor tanpa nama", "Aminah"]


async def test_errors_name_only_the_fields_the_client_sent(services: BackingServices) -> None:
    """Without a first or last name the email or phone stands in for the reporter's name: a
    contact too long is blamed on itself alone, never on first_name/last_name the client did
    not send; one a name could not hold, yet valid as a contact, is taken."""
    partner = await services.token("partner")
    anonymous = {k: v for k, v in FORM.items()
                 if k not in {"first_name", "last_name", "email", "phone"}}
    long_email = "s" * 220 + "@posko.example.id"
    async with running_app(services) as client:
        for field, value in (("phone", "8" * 500), ("email", "s" * 300 + "@example.id")):
            response = await client.post("/open311/v2/requests.json",
                                         data={**anonymous, field: value, "api_key": partner})
            assert response.status_code == 400, response.text
            said = [e["description"] for e in errors_of(response)]
            assert said, response.text
            assert all(d.startswith(f"{field}: ") for d in said), said
        for form in ({**anonymous, "email": long_email},
                     {**anonymous, "email": long_email, "phone": "+62811000"}):
            taken = await client.post("/open311/v2/requests.json",
                                      data={**form, "api_key": partner})
            assert taken.status_code == 201, taken.text
    rows = await query(services.database_url, "SELECT reporter->>'name' AS name, "
                       "reporter->>'email' AS email FROM intake.complaints ORDER BY seq")
    assert [(r["name"], r["email"]) for r in rows] == [
        ("Pelapor tanpa nama", long_email), ("+62811000", long_email)]


async def test_the_api_key_never_reaches_a_log_line(services: BackingServices,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    partner = await services.token("partner", "posko.open311")
    caplog.set_level(logging.DEBUG)
    async with running_app(services) as client:
        assert (await client.post("/open311/v2/requests.xml",
                                  data={**FORM, "api_key": partner})).status_code == 201
        assert (await client.post(f"/open311/v2/requests.json?api_key={partner}",
                                  data={**FORM, "lat": "99"})).status_code == 400
        assert (await client.get(f"/open311/v2/requests.xml?api_key={partner}")).status_code \
            == 200
        wrong = "adu_" + "x" * 40
        assert (await client.post("/open311/v2/requests.xml",
                                  data={**FORM, "api_key": wrong})).status_code == 403
    # The test's own HTTP client logs the URLs it calls; everything else is the server's.
    served = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert served, "the server logged nothing: the check would prove nothing"
    lines = [record.getMessage() for record in served] + [str(r.__dict__) for r in served]
    assert not [line for line in lines if partner in line or wrong in line]
    # The access log names the caller by its token's name, the key in the body or the query
    # as a bearer token (RUNNING.md); an unknown key names nobody.
    access = [(r.__dict__["status"], r.__dict__["caller"]) for r in served
              if r.name == "aduan.access"]
    assert access == [(201, "posko.open311"), (400, "posko.open311"), (200, "posko.open311"),
                      (403, None)]
