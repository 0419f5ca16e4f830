"""Hostile text from outside: lone surrogates, tampered cursors, odd ``If-Match`` values, foreign
digits and invisible names. Every answer is a 4xx problem or a success, never a 500, and nothing
of it reaches the database or the log."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.case_api.helpers import Tokens, open_case
from tests.support import BackingServices, bearer, complaint, running_app

T = TypeVar("T")
SURROGATE = "\ud800"
PROBLEM_JSON = "application/problem+json"
# Digits other than ASCII's: Python's \d and int() take them.
ARABIC_12 = "\u0661\u0662"
ARABIC_2022 = "\u0662\u0660\u0662\u0662"
FULLWIDTH_2022 = "\uff12\uff10\uff12\uff12"

# Every text field of a complaint, as the JSON pointer a 422 names.
COMPLAINT_TEXT = [
    "/kind", "/channel", "/substance", "/summary", "/description", "/reporter/name",
    "/reporter/email", "/reporter/phone", "/reporter/identity_number", "/reporter/address",
    "/reported_agency/code", "/reported_agency/name", "/location/regency", "/location/place",
    "/external_reference", "/incident_date",
]
TRANSITION_TEXT = ["/action", "/note", "/reason", "/assignee", "/due_at", "/resolution",
                   "/maladministration", "/transferred_to", "/complexity", "/effective_at"]
ACTIONS = ["register", "request_completion", "withdraw", "respond", "close", "transfer"]


def with_value(body: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    *parents, last = pointer.strip("/").split("/")
    target = changed
    for part in parents:
        target = target[part]
    target[last] = value
    return changed


def encoded(text: str) -> bytes:
    """A Python string as a client could put it on the wire (lone surrogates too)."""
    return text.encode("utf-8", "surrogatepass")


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def json_bytes(document: Any) -> bytes:
    # json.dumps escapes a lone surrogate as \ud800, exactly as a careless client would send it.
    return json.dumps(document).encode()


def assert_answered(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON, response.headers
        assert response.json()["status"] == response.status_code


async def test_lone_surrogates_in_any_field_are_422_and_go_nowhere(
    services: BackingServices, caplog: pytest.LogCaptureFixture,
) -> None:
    tokens = await Tokens.create(services)
    caplog.set_level(logging.DEBUG)
    headers = {**bearer(tokens.partner), "Content-Type": "application/json"}
    async with running_app(services) as client:
        for pointer in COMPLAINT_TEXT:
            body = with_value(complaint(), pointer, f"Pasar{SURROGATE}Ikan")
            response = await client.post("/v1/complaints", content=json_bytes(body),
                                         headers=headers)
            assert response.status_code == 422, (pointer, response.text)
            assert response.json()["errors"][0]["field"] == pointer
        as_key = {**complaint(), f"x{SURROGATE}": "y"}
        response = await client.post("/v1/complaints", content=json_bytes(as_key),
                                     headers=headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "/x\\ud800"
        # A surrogate pair is a real character (an emoji here), and is kept.
        paired = with_value(complaint(), "/summary", "Listrik padam \ud83d\ude21")
        kept = await client.post("/v1/complaints", content=json_bytes(paired), headers=headers)
        assert kept.status_code == 201, kept.text
        assert kept.json()["summary"] == "Listrik padam \U0001f621"

        case = await open_case(client, tokens)
        for pointer in TRANSITION_TEXT:
            body = with_value({"action": "withdraw"}, pointer, SURROGATE)
            response = await client.post(f"/v1/cases/{case['id']}/transitions",
                                         content=json_bytes(body),
                                         headers={**bearer(tokens.assistant),
                                                  "Content-Type": "application/json"})
            assert response.status_code == 422, (pointer, response.text)
        listed = await client.get("/v1/complaints", headers=bearer(tokens.admin))
        assert len(listed.json()["items"]) == 2  # the emoji and the case's complaint only
    assert SURROGATE not in caplog.text
    assert "\\ud800" not in caplog.text


async def test_json_nested_deeper_than_a_parser_recurses_is_400(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    deep = "[" * 3000 + "]" * 3000
    # With an escape the body is read once more, for lone surrogates, before anything else.
    bodies = [f'{{"summary": "a", "x": {deep}}}', f'{{"summary": "\\u0041", "x": {deep}}}']
    async with running_app(services) as client:
        case = await open_case(client, tokens)
        writes = [("POST", "/v1/complaints", tokens.partner), ("POST", "/v1/complaints", None),
                  ("POST", "/v1/webhooks", tokens.partner),
                  ("POST", f"/v1/cases/{case['id']}/transitions", tokens.assistant),
                  ("PUT", "/v1/metrics/targets/2030-Q1", tokens.admin),
                  ("POST", "/public/status", None), ("POST", "/status", None)]
        for body in bodies:
            for method, path, token in writes:
                response = await client.request(
                    method, path, content=body.encode(),
                    headers={**(bearer(token) if token else {}),
                             "Content-Type": "application/json"})
                assert response.status_code == 400, (method, path, body[:30], response.text)
                if path != "/status":  # the complainant's page answers with a page
                    assert response.headers["content-type"] == PROBLEM_JSON
            posted = await client.post("/open311/v2/requests.json", content=body.encode(),
                                       headers={"Content-Type": "application/json"})
            assert 400 <= posted.status_code < 500, posted.text
            assert isinstance(posted.json(), list), posted.text  # the Open311 error list
        listed = await client.get("/v1/complaints", headers=bearer(tokens.admin))
        assert len(listed.json()["items"]) == 1  # the case's complaint only


async def test_tampered_cursors_are_422(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    tampered = [cursor_of(b"i:" + b"9" * 30), cursor_of(b"i:-1"), cursor_of(b"i:1\x00"),
                cursor_of(f"i:{ARABIC_12}".encode()), cursor_of(b"s:\x00"),
                cursor_of(b"s:\xed\xa0\x80"), cursor_of(b"s:" + b"a" * 200), "%00",
                "\u00e9t\u00e9", "====", cursor_of(b"x:1")]
    async with running_app(services) as client:
        for path in ("/v1/complaints", "/v1/cases", "/v1/agencies"):
            for cursor in tampered:
                response = await client.get(f"{path}?cursor={quote(cursor, safe='%')}",
                                            headers=bearer(tokens.admin))
                assert response.status_code == 422, (path, cursor, response.text)
                assert response.headers["content-type"] == PROBLEM_JSON


async def test_odd_if_match_values_are_4xx(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services) as client:
        case = await open_case(client, tokens)
        for value in ["²".encode(), b"\xb2", b'"\xb2"', b"1", b"W/1", b'"1', b"", b"**",
                      b'"1",,W/', b"\xff\xfe"]:
            response = await client.post(
                f"/v1/cases/{case['id']}/transitions", json={"action": "register"},
                headers=[(b"authorization", f"Bearer {tokens.assistant}".encode()),
                         (b"if-match", value)])
            assert response.status_code in (412, 422), (value, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
        listed = await client.post(
            f"/v1/cases/{case['id']}/transitions", json={"action": "register"},
            headers={**bearer(tokens.assistant), "If-Match": '"7", "1"'})
        assert listed.status_code == 200, listed.text


async def test_periods_are_ascii_and_whole(services: BackingServices) -> None:
    assistant = await services.token("assistant")
    async with running_app(services) as client:
        for period in ("2022-Q1\n", f"{ARABIC_2022}-Q1", "2022-Q\u0661", FULLWIDTH_2022,
                       "2022-0\uff13", " 2022"):
            summary = await client.get(f"/v1/metrics/summary?period={quote(period)}",
                                       headers=bearer(assistant))
            assert summary.status_code == 422, period
            target = await client.put(f"/v1/metrics/targets/{quote(period)}",
                                      json={"closures": 9}, headers=bearer(assistant))
            assert target.status_code == 422, period
        for bound in ("2022-01-01\n", f"{ARABIC_2022}-01-01"):
            monthly = await client.get(f"/v1/metrics/monthly?from={quote(bound)}&to=2022-12-31",
                                       headers=bearer(assistant))
            assert monthly.status_code == 422, bound
        # One target per quarter: the only spelling of 2022-Q1 is "2022-Q1".
        assert (await client.get("/v1/metrics/targets/2022-Q1",
                                 headers=bearer(assistant))).status_code == 404


async def test_invisible_reporter_names_count_as_absent(services: BackingServices) -> None:
    tokens = await Tokens.create(services)
    invisible = ["\u200b", "\u200b\u200c\u200d", "\ufeff \u2060", "\u3164", "\u00a0\u202f"]
    async with running_app(services) as client:
        for name in invisible:
            body = complaint(reporter={"name": name, "confidential": False})
            refused = await client.post("/v1/complaints", json=body,
                                        headers=bearer(tokens.partner))
            assert refused.status_code == 422, (name, refused.text)
            assert refused.json()["errors"][0]["field"] == "/reporter/name"
            place = complaint(channel="on_the_spot", location={"place": name})
            refused = await client.post("/v1/complaints", json=place,
                                        headers=bearer(tokens.partner))
            assert refused.status_code == 422, (name, refused.text)
            assert refused.json()["errors"][0]["field"] == "/location/place"
        for field in ("summary", "description"):
            refused = await client.post("/v1/complaints", json=complaint(**{field: "\u200b"}),
                                        headers=bearer(tokens.partner))
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["field"] == f"/{field}"
        # Where a name is not required, an invisible one is simply no name.
        own = complaint(kind="own_initiative", reporter={"name": "\u200b\u200b"})
        accepted = await client.post("/v1/complaints", json=own, headers=bearer(tokens.assistant))
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["reporter"]["name"] is None


# --- arbitrary strings everywhere ---------------------------------------------------------------

# Every code point, lone surrogates, NUL and the invisible ones included, plus a few known
# troublemakers.
ANY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(["\x00", SURROGATE, "\udfff", "\u200b", "²", ARABIC_12, "9" * 40, "-1",
                     "*", 'W/"1"', '"1"', "2022-Q1\n", "<b>x</b>", "' OR 1=1 --", "\\u0000"]),
)
EXAMPLES = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


class Driver:
    """Runs the app's client from hypothesis's thread on the test's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient,
                 tokens: Tokens, case_id: str) -> None:
        self.loop, self.client, self.tokens, self.case_id = loop, client, tokens, case_id

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def request(self, method: str, url: str, *, token: str | None = None,
                body: Any = None, headers: dict[str, bytes] | None = None) -> None:
        sent: dict[str, Any] = {"authorization": f"Bearer {token or self.tokens.admin}".encode()}
        if body is not None:
            sent["content-type"] = b"application/json"
        sent.update(headers or {})
        content = json_bytes(body) if body is not None else None
        response = self.run(self.client.request(method, url, content=content, headers=sent))
        assert_answered(response)


async def drive(services: BackingServices, test: Callable[[Driver], None]) -> None:
    tokens = await Tokens.create(services)
    async with running_app(services, expiry_interval_seconds=3600) as client:
        case = await open_case(client, tokens)
        driver = Driver(asyncio.get_running_loop(), client, tokens, case["id"])
        await asyncio.to_thread(test, driver)


async def test_arbitrary_text_in_every_body_field(services: BackingServices) -> None:
    def test(driver: Driver) -> None:
        @EXAMPLES
        @given(pointer=st.sampled_from(COMPLAINT_TEXT + TRANSITION_TEXT + ["/agency"]),
               value=ANY_TEXT, action=st.sampled_from(ACTIONS))
        def each(pointer: str, value: str, action: str) -> None:
            if pointer == "/agency":
                driver.request("PUT", "/v1/agencies/pln-uiw-babel", body={"name": value},
                               token=driver.tokens.assistant)
            elif pointer in COMPLAINT_TEXT:
                driver.request("POST", "/v1/complaints", token=driver.tokens.partner,
                               body=with_value(complaint(), pointer, value))
            else:
                driver.request("POST", f"/v1/cases/{driver.case_id}/transitions",
                               token=driver.tokens.assistant,
                               body=with_value({"action": action}, pointer, value))

        each()

    await drive(services, test)


LISTS = ["/v1/complaints?cursor={}", "/v1/complaints?status={}&kind={}",
         "/v1/complaints?tracking_number={}", "/v1/cases?cursor={}",
         "/v1/cases?agency={}&assignee={}&status={}", "/v1/agencies?cursor={}",
         "/v1/metrics/summary?period={}", "/v1/metrics/summary?from={}&to={}",
         "/v1/metrics/monthly?from=2022-01-01&to={}&group_by={}"]
PATHS = ["/v1/complaints/{}", "/v1/cases/{}", "/v1/agencies/{}", "/v1/metrics/targets/{}"]


async def test_arbitrary_text_in_every_parameter(services: BackingServices) -> None:
    def test(driver: Driver) -> None:
        @EXAMPLES
        @given(template=st.sampled_from(LISTS + PATHS), value=ANY_TEXT)
        def each(template: str, value: str) -> None:
            escaped = quote(encoded(value), safe="")
            driver.request("GET", template.replace("{}", escaped))
            if template in PATHS:
                driver.request("PUT", template.replace("{}", escaped), body={"name": "x"},
                               token=driver.tokens.assistant)
                driver.request("POST", f"/v1/cases/{escaped}/transitions",
                               token=driver.tokens.assistant, body={"action": "register"})

        each()

    await drive(services, test)


async def test_arbitrary_text_in_every_header(services: BackingServices) -> None:
    def test(driver: Driver) -> None:
        @settings(EXAMPLES, max_examples=60)
        @given(header=st.sampled_from(["if-match", "idempotency-key", "authorization",
                                       "accept", "content-type", "x-request-id"]),
               value=ANY_TEXT)
        def each(header: str, value: str) -> None:
            raw = encoded(value).replace(b"\r", b"").replace(b"\n", b"")
            driver.request("POST", f"/v1/cases/{driver.case_id}/transitions",
                           token=driver.tokens.assistant, body={"action": "withdraw"},
                           headers={header: raw})
            if header in ("idempotency-key", "content-type", "accept"):
                driver.request("POST", "/v1/complaints", token=driver.tokens.partner,
                               body=complaint(), headers={header: raw})

        each()

    await drive(services, test)
