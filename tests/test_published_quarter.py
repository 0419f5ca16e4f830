"""The quarter Ombudsman Babel published, imported through the API, gives the published figures."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from metrics_worker.rebuild import rebuild
from services import published_quarter
from services.published_quarter import PUBLISHED, Api
from tests import support
from tests.fixtures import expected
from tests.fixtures.expected import comparable
from tests.fixtures.history import PERIODS, figures, log_records, run_cli, settled
from tests.support import (
    BackingServices,
    ServiceProcess,
    bearer,
    running_app,
    start_services,
)

pytestmark = pytest.mark.timeout(600)


async def published_figures(client: httpx.AsyncClient, base: str, token: str,
                            quarter: published_quarter.Quarter) -> dict[str, Any]:
    """Checks every figure the office published; returns the summary."""
    response = await client.get(f"{base}/v1/metrics/summary", params={"period": "2022-Q1"},
                                headers=bearer(token))
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()
    assert summary["received"] == PUBLISHED["received"] == 480
    assert summary["received_by_month"]["2022-03"] == PUBLISHED["received_in_march"] == 294
    assert summary["peak_month"] == {"month": "2022-03", "received": 294,
                                     "top_substance": "electricity"}
    assert summary["on_the_spot_locations"] == 15
    assert summary["examination"]["handled_by_received_year"] == {"2022": 82, "2021": 11}
    assert summary["closed"] == 213
    assert summary["targets"]["closures"] == {"target": 260, "actual": 213, "rate": 0.8192}
    assert f"{summary['targets']['closures']['rate'] * 100:.2f}" == "81.92"

    # The rest of the quarter the report speaks of.
    assert summary["received_by_month"] == {"2022-01": 90, "2022-02": 96, "2022-03": 294}
    assert summary["contacts"] == 532
    assert summary["contacts_by_kind"]["consultation"] == 40
    assert summary["contacts_by_kind"]["copy_letter"] == 12
    assert summary["contacts_by_kind"]["own_initiative"] == 3
    assert summary["carried_over_by_year"] == {"2021": 17}
    assert summary["handled"] == 480 + 17
    assert summary["examination"]["handled"] == 93
    assert summary["examination"]["closed"] == 50
    assert summary["targets"]["examination_closures"] == {"target": 60, "actual": 50,
                                                          "rate": 0.8333}
    assert summary["closed_by_stage"] == {"examination": 44, "resolution": 6,
                                          "verification": 163}
    assert sum(summary["backlog_at_end"].values()) == 480 + 17 - 213
    liaison = summary["liaison"]
    assert sum(a["requests"] for a in liaison.values()) == 54
    assert sum(a["responses"] for a in liaison.values()) == 44
    assert sum(a["overdue_at_end"] for a in liaison.values()) >= 8
    assert all(a["median_response_hours"] is None or a["median_response_hours"] > 0
               for a in liaison.values())

    # March's peak came through the electricity-outage complaint post.
    march = {"from": "2022-03-01", "to": "2022-03-31"}
    by_channel = (await client.get(f"{base}/v1/metrics/monthly",
                                   params={**march, "group_by": "channel"},
                                   headers=bearer(token))).json()["rows"]
    by_substance = (await client.get(f"{base}/v1/metrics/monthly",
                                     params={**march, "group_by": "substance"},
                                     headers=bearer(token))).json()["rows"]
    posted = {r["group"]: r["received"] for r in by_channel}["complaint_post"]
    electricity = {r["group"]: r["received"] for r in by_substance}["electricity"]
    planned = sum(1 for r in quarter.records if r.body["channel"] == "complaint_post"
                  and r.body["substance"] == "electricity" and r.received_at.month == 3)
    assert posted == planned == 176
    assert electricity == 200
    return summary


def test_the_plan_is_consistent() -> None:
    """Same seed, same records; every case's steps in time order, after its receipt."""
    quarter = published_quarter.build()
    again = published_quarter.build()
    assert [r.body for r in quarter.records] == [r.body for r in again.records]
    for record in quarter.records:
        moment = record.received_at
        for step in record.steps:
            assert step.at >= moment, (record.body["summary"], step)
            moment = step.at


class Saturated:
    """The app behind a front that answers every third API request 503 with Retry-After (in
    seconds or as an HTTP date, as RFC 9110 allows), as a saturated service does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counter = itertools.count(1)
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or next(self.counter) % 3:
            await self.app(scope, receive, send)
            return
        self.refused += 1
        soon = datetime.now(UTC) + timedelta(seconds=1)
        retry_after = "1" if self.refused % 2 else format_datetime(soon, usegmt=True)
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/problem+json"),
            (b"retry-after", retry_after.encode())]})
        await send({"type": "http.response.body",
                    "body": b'{"type":"https://aduan.ombudsman.go.id/problems/overloaded",'
                            b'"title":"Service overloaded","status":503,"detail":"busy"}'})


async def test_an_import_waits_out_a_saturated_server(services: BackingServices) -> None:
    """Every request answered 503 is sent again after its Retry-After: the import completes
    with exactly its records and steps, none twice."""
    full = published_quarter.build()
    records = [r for r in full.records if r.steps][:16] + [
        r for r in full.records if not r.steps][:4]
    quarter = published_quarter.Quarter(records)
    admin = await services.token("admin")
    async with running_app(services) as client:
        front = Saturated(client.app)  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=front),
                                     base_url="http://aduan.test", timeout=30) as busy:
            loaded = await published_quarter.load(Api(busy, admin), quarter)
    assert front.refused >= 10
    assert loaded.complaints == len(records)
    complaints = await support.query(services.database_url,
                             "SELECT summary, received_at FROM intake.complaints")
    assert sorted((r["summary"], r["received_at"]) for r in complaints) == sorted(
        (r.body["summary"], r.received_at) for r in records)
    steps = await support.query(services.database_url,
                        "SELECT count(*) AS n FROM cases.transitions")
    assert steps[0]["n"] == quarter.transitions
    targets = await support.query(services.database_url,
                          "SELECT closures FROM metrics.targets WHERE period = $1",
                          quarter.period)
    assert [t["closures"] for t in targets] == [quarter.target["closures"]]


def test_only_requests_refused_before_they_ran_are_sent_again() -> None:
    def answer(status: int, problem_type: str | None) -> httpx.Response:
        body = {"type": problem_type, "status": status} if problem_type else None
        return httpx.Response(status, json=body, headers={"Retry-After": "1"})

    overloaded = "https://aduan.ombudsman.go.id/problems/overloaded"
    assert published_quarter.refused_unrun(answer(429, None))
    assert published_quarter.refused_unrun(answer(503, overloaded))
    # A backing service down: the request may have committed before its answer was lost.
    assert not published_quarter.refused_unrun(answer(503, "about:blank"))
    assert not published_quarter.refused_unrun(httpx.Response(503, text="<html>busy</html>"))
    assert not published_quarter.refused_unrun(answer(500, overloaded))


def test_retry_after_is_read_as_rfc_9110_writes_it() -> None:
    now = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)

    def answer(value: str | None) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value} if value is not None else {})

    assert published_quarter.retry_after(answer("2"), now) == 2.0
    later = format_datetime(now + timedelta(seconds=5), usegmt=True)
    assert published_quarter.retry_after(answer(later), now) == 5.0
    assert published_quarter.retry_after(answer("Sun, 06 Nov 1994 08:49:37 GMT"), now) == 0.0
    assert published_quarter.retry_after(answer("86400"), now) == published_quarter.LONGEST_PAUSE
    for unreadable in (None, "", "soon", "-3", "1.5e400", "Sun, 99 Nov 1994"):
        assert published_quarter.retry_after(answer(unreadable), now) == 1.0, unreadable


def assert_definitions_hold(before: dict[str, Any], quarter: published_quarter.Quarter) -> None:
    """Every field of every period, against the definitions applied to the plan itself."""
    for query, first, last in PERIODS:
        computed = comparable(before[f"summary {query!r}"])
        assert computed == expected.summary(quarter, first, last), query


async def assert_report_tells_it(env: dict[str, str]) -> None:
    """``aduan report`` prints the office's note from the same figures."""
    code, report, err = await run_cli(env, "report", "--period", "2022-Q1")
    assert code == 0, err
    for published in ("**480** reports received", "| March 2022 | 294 |",
                      "Peak month: **March 2022** with 294 reports; its main subject: "
                      "**electricity**", "**15** distinct public-service locations",
                      "| 2022 | 82 |", "| 2021 | 11 |",
                      "**213** against a target of 260: **81.92 %** of target",
                      "Carried over from before 1 January 2022: **17** reports (2021: 17)",
                      "## Liaison officers (narahubung): response times"):
        assert published in report, published


async def test_published_quarter_on_kafka(kafka_services: BackingServices,
                                          tmp_path: Path) -> None:
    """Imported into three ``aduan serve`` processes on Kafka; rebuilt from offset 0; reported."""
    env = kafka_services.env()
    processes = start_services(kafka_services, tmp_path, env)
    try:
        admin = await kafka_services.token("admin")
        await asyncio.gather(*(p.wait_ready() for p in processes.values()))
        quarter = published_quarter.build()
        api = Api(httpx.AsyncClient(timeout=60), admin, intake=processes["intake"].url,
                  case=processes["case"].url, metrics=processes["metrics"].url)
        async with api.client:
            loaded = await published_quarter.load(api, quarter)
            await settled(kafka_services.database_url, quarter, timeout=180)
            print(f"kafka: imported {loaded.complaints} intakes and {loaded.transitions} steps "
                  f"in {loaded.seconds:.1f}s")
            await published_figures(api.client, api.metrics, admin, quarter)
            before = await figures(api.client, api.metrics, admin)
            assert_definitions_hold(before, quarter)

            # Every figure replayable: the whole quarter again from offset 0, service stopped.
            processes["metrics"].stop()
            result = await rebuild(kafka_services.settings())
            assert result.records == log_records(quarter)
            print(f"kafka: rebuilt {result.records} records in {result.seconds:.1f}s "
                  f"({result.per_second:.0f}/s)")
            restarted = ServiceProcess("metrics", env, tmp_path / "metrics-2.log").start()
            processes["metrics"] = restarted
            await restarted.wait_ready()
            assert await figures(api.client, restarted.url, admin) == before
        await assert_report_tells_it(env)
    finally:
        for process in processes.values():
            process.stop()


@pytest.mark.skipif(not os.environ.get("ADUAN_TEST_SLOW"),
                    reason="the Kafka variant covers it; set ADUAN_TEST_SLOW=1 to run it too")
async def test_published_quarter_in_process(services: BackingServices) -> None:
    """Imported into the all-in-one app on the database event log; rebuilt; reported."""
    admin = await services.token("admin")
    quarter = published_quarter.build()
    async with running_app(services) as client:
        loaded = await published_quarter.load(Api(client, admin), quarter)
        await settled(services.database_url, quarter)
        print(f"imported {loaded.complaints} intakes and {loaded.transitions} steps in "
              f"{loaded.seconds:.1f}s")
        await published_figures(client, "", admin, quarter)
        before = await figures(client, "", admin)
    assert_definitions_hold(before, quarter)

    result = await rebuild(services.settings())
    assert result.records == log_records(quarter)
    print(f"rebuilt {result.records} records in {result.seconds:.1f}s "
          f"({result.per_second:.0f}/s)")
    async with running_app(services) as client:
        assert await figures(client, "", admin) == before
    await assert_report_tells_it(services.env())
