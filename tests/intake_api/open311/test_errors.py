"""Errors answered before any Open311 endpoint runs are the specification's error lists too."""

from __future__ import annotations

import httpx

from shared.middleware import MAX_BODY_BYTES
from tests.intake_api.open311.test_open311 import FORM, FORM_HEADERS, complaint_count, errors_of
from tests.support import BackingServices, running_app


def assert_error_list(response: httpx.Response, status: int, fmt: str) -> str:
    """The list's one error, in the path's format, with the response's status; its text."""
    assert response.status_code == status, response.text
    wanted = "text/xml" if fmt == "xml" else "application/json"
    assert response.headers["content-type"].startswith(wanted), response.headers
    errors = errors_of(response)
    assert [e["code"] for e in errors] == [status], errors
    description: str = errors[0]["description"]
    return description


async def test_the_guards_refusals_are_error_lists_in_the_paths_format(
        services: BackingServices) -> None:
    partner = await services.token("partner")
    form = str(httpx.QueryParams({**FORM, "api_key": partner})).encode()
    async with running_app(services) as client:
        for fmt in ("xml", "json"):
            path = f"/open311/v2/requests.{fmt}"
            for headers in ({"content-type": "text/plain"}, {}):
                said = assert_error_list(await client.post(path, content=form, headers=headers),
                                         415, fmt)
                assert "x-www-form-urlencoded" in said
                assert "application/json" not in said
            huge = form + b"&address_id=" + b"a" * MAX_BODY_BYTES
            assert_error_list(await client.post(path, content=huge, headers=FORM_HEADERS),
                              413, fmt)
            said = assert_error_list(
                await client.get(f"{path}?api_key={partner}&service_code=a%00b"), 400, fmt)
            assert "NUL" in said
            moved = await client.put(path, content=form, headers=FORM_HEADERS)
            assert_error_list(moved, 405, fmt)
            assert moved.headers["allow"] == "GET, HEAD, POST"
            gone = await client.delete(f"/open311/v2/services.{fmt}")
            assert_error_list(gone, 405, fmt)
            assert gone.headers["allow"] == "GET, HEAD"
            assert_error_list(await client.get(f"/open311/v2/services/water.{fmt}"), 404, fmt)
            head = await client.head(f"/open311/v2/services/water.{fmt}")
            assert head.status_code == 404
            assert head.content == b""
            assert int(head.headers["content-length"]) > 0
    assert await complaint_count(services) == 0


async def test_text_the_database_cannot_hold_is_one_error_per_field(
        services: BackingServices) -> None:
    """NUL in any field, stored as a complaint's or as the request's own details, is named once;
    an over-long name is measured in characters."""
    partner = await services.token("partner")
    async with running_app(services) as client:
        for field in ("description", "address_id", "device_id", "address_string", "media_url",
                      "first_name"):
            value = "https://foto.example.id/a\x00b" if field == "media_url" else "a\x00b"
            response = await client.post("/open311/v2/requests.json",
                                         data={**FORM, "api_key": partner, field: value})
            assert response.status_code == 400, (field, response.text)
            errors = errors_of(response)
            assert len(errors) == 1, (field, errors)
            assert errors[0]["description"].startswith(f"{field}: "), (field, errors)
        response = await client.post("/open311/v2/requests.xml",
                                     data={**FORM, "api_key": partner, "first_name": "S" * 201})
        said = assert_error_list(response, 400, "xml")
        assert "characters" in said
        assert "items" not in said
    assert await complaint_count(services) == 0


async def test_fields_longer_than_their_columns_are_400_error_lists(
        services: BackingServices) -> None:
    """Every field of a request is measured before it is stored: an address_id wider than its
    column is the client's 400, in the path's format, and no tracking number is spent."""
    partner = await services.token("partner")
    async with running_app(services) as client:
        for fmt in ("json", "xml"):
            response = await client.post(f"/open311/v2/requests.{fmt}",
                                         data={**FORM, "api_key": partner,
                                               "address_id": "x" * 5000})
            said = assert_error_list(response, 400, fmt)
            assert said.startswith("address_id: "), said
            assert "255" in said
        fitting = await client.post("/open311/v2/requests.json",
                                    data={**FORM, "api_key": partner, "address_id": "x" * 255})
        assert fitting.status_code == 201, fitting.text
        # The refused ones spent no tracking number: this is the first.
        assert fitting.json()[0]["service_request_id"].endswith("-000001"), fitting.text
        # Each of the form's text fields, far too long, is refused or stored: never a 500.
        for field in ("description", "address_string", "first_name", "last_name", "email",
                      "phone", "media_url", "device_id", "attribute[agency]",
                      "attribute[agency_name]", "service_code"):
            response = await client.post("/open311/v2/requests.json",
                                         data={**FORM, "api_key": partner, field: "x" * 30_000})
            assert response.status_code in (201, 400), (field, response.text)


async def test_a_json_body_is_415_like_every_body_that_is_no_form(
        services: BackingServices) -> None:
    """``POST requests`` takes a form (its OpenAPI: "415: the body is not a form"): JSON is
    one more type that is not, answered as text/plain is, in the path's format."""
    partner = await services.token("partner")
    async with running_app(services) as client:
        for fmt in ("xml", "json"):
            path = f"/open311/v2/requests.{fmt}"
            for media_type in ("application/json", "application/geo+json",
                               "application/json; charset=utf-8"):
                response = await client.post(path, params={"api_key": partner},
                                             json=FORM,
                                             headers={"content-type": media_type})
                said = assert_error_list(response, 415, fmt)
                assert "x-www-form-urlencoded" in said
                assert "application/json" not in said
            said = assert_error_list(await client.post(
                path, params={"api_key": partner}, content=b"x=1", headers={
                    "content-type": "application/json"}), 415, fmt)
            assert said == assert_error_list(await client.post(
                path, params={"api_key": partner}, content=b"x=1",
                headers={"content-type": "text/plain"}), 415, fmt)
    assert await complaint_count(services) == 0
