"""CSV from every metrics GET, HTTP Basic for "from web" connectors, bounded large answers."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from metrics_worker import aggregates
from metrics_worker.formats import json_rows_response
from shared.db import Database
from tests.support import BackingServices, bearer, running_app

Q1 = {"period": "2022-Q1"}


class BodyMessages:
    """An ASGI wrapper noting the size of each body message the app sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.messages: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def noted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                self.messages.append(len(message["body"]))
            await send(message)

        await self.app(scope, receive, noted)


def read_csv(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.endswith(b"\r\n")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


def nested(rows: list[list[str]]) -> dict[str, Any]:
    """Rebuilds the summary's JSON shape from ``figure,key,value`` rows (values as text)."""
    document: dict[str, Any] = {}
    for figure, key, value in rows:
        if not key:
            document[figure] = value
            continue
        place = document
        for part in figure.split("."):
            place = place.setdefault(part, {})
        place[key] = value
    return document


def as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items() if v != {}}
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("published")
async def test_every_metrics_get_answers_csv_with_basic_auth(published: BackingServices) -> None:
    analyst = await published.token("analyst", name="excel")
    basic = httpx.BasicAuth("any-name", analyst)
    async with running_app(published) as client:
        summary = (await client.get("/v1/metrics/summary", params=Q1, auth=basic)).json()
        assert summary["received"] == 480

        by_query = read_csv(await client.get("/v1/metrics/summary",
                                             params={**Q1, "format": "csv"}, auth=basic))
        by_header = read_csv(await client.get("/v1/metrics/summary", params=Q1, auth=basic,
                                              headers={"Accept": "text/csv"}))
        assert by_query == by_header
        assert by_query[0] == ["figure", "key", "value"]
        assert ["received", "", "480"] in by_query
        assert ["received_by_month", "2022-03", "294"] in by_query
        assert ["targets.closures", "rate", "0.8192"] in by_query
        assert ["examination.handled_by_received_year", "2021", "11"] in by_query
        assert ["peak_month", "top_substance", "electricity"] in by_query
        # Every figure of the JSON answer is in the CSV, and nothing else.
        assert nested(by_query[1:]) == as_text(summary)

        params = {"from": "2022-01-01", "to": "2022-03-31", "group_by": "channel"}
        rows = (await client.get("/v1/metrics/monthly", params=params,
                                 headers=bearer(analyst))).json()["rows"]
        table = read_csv(await client.get("/v1/metrics/monthly",
                                          params={**params, "format": "csv"}, auth=basic))
        assert table[0] == ["month", "group", "contacts", "received", "registered", "closed"]
        assert table[1:] == [[str(r[c]) for c in table[0]] for r in rows]
        assert sum(int(r[3]) for r in table[1:]) == 480

        target = read_csv(await client.get("/v1/metrics/targets/2022-Q1", auth=basic,
                                           headers={"Accept": "text/csv;q=0.9, */*;q=0.1"}))
        assert target[0] == ["period", "closures", "examination_closures", "updated_at",
                             "updated_by"]
        assert target[1][:3] == ["2022-Q1", "260", "60"]
        as_json = await client.get("/v1/metrics/targets/2022-Q1", auth=basic,
                                   headers={"Accept": "text/html,application/xhtml+xml,"
                                                      "application/xml;q=0.9,*/*;q=0.8"})
        assert as_json.json()["closures"] == 260  # what a browser asks for gets JSON
        # The same instant in both, RFC 3339 in UTC with a Z (API.md conventions).
        assert target[1][3] == as_json.json()["updated_at"]
        assert target[1][3].endswith("Z")
        assert datetime.fromisoformat(target[1][3]).utcoffset() == timedelta(0)


async def test_bad_formats_and_credentials_are_problems(services: BackingServices) -> None:
    analyst = await services.token("analyst")
    async with running_app(services) as client:
        unknown = await client.get("/v1/metrics/summary", params={**Q1, "format": "xlsx"},
                                   headers=bearer(analyst))
        assert unknown.status_code == 422
        assert unknown.headers["content-type"] == "application/problem+json"
        for path in ("/v1/metrics/summary", "/v1/metrics/monthly?from=2022-01-01&to=2022-01-31"):
            refused = await client.get(path, params=Q1 if "summary" in path else None,
                                       headers={**bearer(analyst), "Accept": "application/xml"})
            assert refused.status_code == 406, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert "text/csv" in refused.json()["detail"]

        for header in ("Basic !!!", "Basic " + "eA==", "Basic", "Digest abc"):
            answer = await client.get("/v1/metrics/summary", params=Q1,
                                      headers={"Authorization": header})
            assert answer.status_code == 401, header
            assert "Basic realm" in answer.headers["www-authenticate"]
        wrong = await client.get("/v1/metrics/summary", params=Q1,
                                 auth=httpx.BasicAuth("analyst", "adu_not-a-token"))
        assert wrong.status_code == 401
        partner = await services.token("partner")
        assert (await client.get("/v1/metrics/summary", params=Q1,
                                 auth=httpx.BasicAuth("x", partner))).status_code == 403
        # Wherever a bearer token is accepted, so is Basic: the other services too.
        assert (await client.get("/v1/complaints",
                                 auth=httpx.BasicAuth("x", partner))).status_code == 200


@pytest.mark.timeout(300)
async def test_monthly_by_thousands_of_agencies_is_refused_or_streamed(
        services: BackingServices) -> None:
    """3,000 agency codes over 50 years would be 1.8 million rows: 422 at once.

    One year of them (36,000 rows) is answered, written out in chunks as it goes.
    """
    dsn = make_url(services.database_url).set(drivername="postgresql")
    owner = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await owner.execute("""
            INSERT INTO metrics.contacts (complaint_id, kind, channel, substance, agency,
                                          received_at)
            SELECT gen_random_uuid(), 'report', 'complaint_post', 'electricity',
                   'agency-' || n, timestamptz '2022-01-15 10:00+07' + n * interval '1 hour'
            FROM generate_series(1, 3000) AS n""")
    finally:
        await owner.close()
    async with Database.opened(services.database_url) as database, \
            database.transaction() as session:
        await aggregates.derive(session)  # the counts the projection would have kept
    analyst = await services.token("analyst")
    async with running_app(services) as client:
        began = time.monotonic()
        huge = await client.get("/v1/metrics/monthly", headers=bearer(analyst), params={
            "from": "1990-01-01", "to": "2039-12-31", "group_by": "agency"})
        assert huge.status_code == 422, huge.text[:300]
        assert huge.headers["content-type"] == "application/problem+json"
        assert "at most 100000" in huge.json()["detail"]
        assert time.monotonic() - began < 10

        counted = BodyMessages(client.app)  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=counted),
                                     base_url="http://aduan.test", timeout=60) as direct:
            for fmt, expected_bytes in (("csv", 36_000 * 20), ("json", 36_000 * 60)):
                counted.messages.clear()
                response = await direct.get("/v1/metrics/monthly", headers=bearer(analyst),
                                            params={"period": "2022", "group_by": "agency",
                                                    "format": fmt})
                assert response.status_code == 200
                assert len(response.content) > expected_bytes, fmt
                # Written in many pieces as it goes, never one body built whole.
                assert len(counted.messages) > 50, fmt
                assert max(counted.messages) < 64 * 1024, fmt
        rows = (await client.get("/v1/metrics/monthly", headers=bearer(analyst), params={
            "period": "2022", "group_by": "agency"})).json()["rows"]
        assert len(rows) == 12 * 3000
        assert sum(r["received"] for r in rows) == 3000


async def test_json_rows_are_written_as_the_standard_library_writes_them() -> None:
    """Rows written by orjson a chunk at a time are the bytes ``json`` writes row by row, text
    beyond ASCII escaped as ``json`` escapes it, in chunks of ASCII only and in others."""
    groups = ["pln-uiw-babel", "Dinas Kependudukan \u2013 Bangka", 'a"b\\c\n',
              "\u00e9\u4e2d\U0001f600", ""]
    rows = [{"month": f"2024-{n % 12 + 1:02d}", "group": group, "contacts": n, "closed": 0}
            for n, group in enumerate(groups[:1] * 600 + groups * 100)]
    response = json_rows_response(iter(rows))
    body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[misc]
    expected = '{"rows":[' + ",".join(json.dumps(row, separators=(",", ":"))
                                      for row in rows) + "]}"
    assert body == expected.encode()
    assert json.loads(body)["rows"] == rows
    empty = json_rows_response(iter([]))
    assert b"".join([chunk async for chunk in empty.body_iterator]) == b'{"rows":[]}'  # type: ignore[misc]
