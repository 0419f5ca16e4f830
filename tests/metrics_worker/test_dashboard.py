"""``/dashboard`` and ``aduan report --format html`` in a real headless browser."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from metrics_worker import page
from metrics_worker.formats import _text, figure_rows
from metrics_worker.schemas import Summary
from tests.browser import NewPage
from tests.fixtures.history import run_cli
from tests.support import BackingServices, ServiceProcess, bearer, running_app

CHARTS = {"Reports received by month", "Reports received by channel",
          "Reports received by subject", "Closures against target, by stage",
          "Open reports at the end of the period, by status", "Reports received by agency",
          "Median hours to a liaison's response, by agency",
          "Median days to close, by closure stage"}
SHOWN = """() => Array.from(document.querySelectorAll('[data-figure]')).map(e => ({
    figure: e.dataset.figure, key: e.dataset.key, value: e.dataset.value,
    text: e.textContent.trim()}))"""


def expected_figures(summary: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(figure, key): "" if value is None else _text(value)
            for figure, key, value in figure_rows(summary)}


def assert_numbers_are_the_summarys(shown: list[dict[str, str]],
                                    summary: dict[str, Any]) -> None:
    expected = expected_figures(summary)
    assert {(s["figure"], s["key"]) for s in shown} == set(expected)  # every figure, no other
    for item in shown:
        assert item["value"] == expected[(item["figure"], item["key"])], item
        if item["value"].isdigit():  # counts are drawn as they are
            assert item["text"] == item["value"], item
    assert any(s["figure"] == "received_by_month" and s["key"] == "2022-03"
               and s["text"] == "294" for s in shown)


@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("published")
async def test_dashboard_shows_the_summarys_numbers_offline_on_a_phone_and_on_a4(
        published: BackingServices, new_page: NewPage, artifacts: Path) -> None:
    analyst = await published.token("analyst", name="dashboard-reader")
    server = ServiceProcess("metrics", published.env(), published.workdir / "metrics.log")
    server.start()
    try:
        await server.wait_ready(timeout=120)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            summary = (await client.get("/v1/metrics/summary", params={"period": "2022-Q1"},
                                        headers=bearer(analyst))).json()
            anonymous = await client.get("/dashboard")
            assert anonymous.status_code == 401
            assert "Basic realm" in anonymous.headers["www-authenticate"]
            partner = await published.token("partner", name="dashboard-partner")
            assert (await client.get("/dashboard", auth=("x", partner))).status_code == 403

        desk = await new_page(http_credentials=("analis", analyst))
        answer = await desk.page.goto(f"{server.url}/dashboard?period=2022-Q1",
                                      wait_until="load")
        assert answer is not None
        assert answer.status == 200
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        shown = await desk.page.evaluate(SHOWN)
        assert_numbers_are_the_summarys(shown, summary)
        labels = set(await desk.page.eval_on_selector_all(
            "svg.chart", "charts => charts.map(c => c.getAttribute('aria-label'))"))
        assert labels >= CHARTS
        assert await desk.page.locator("script").count() == 0
        assert desk.hosts() == {server.url}
        await desk.page.screenshot(path=artifacts / "dashboard-2022-Q1.png", full_page=True)

        # The picker: another period, chosen in the form.
        await desk.page.fill("input[name=period]", "2022-03")
        await desk.page.click("button[type=submit]")
        await desk.page.wait_for_url("**/dashboard?period=2022-03")
        march = await desk.page.evaluate(SHOWN)
        assert {"figure": "received", "key": "", "value": "294", "text": "294"} in march

        phone = await new_page(width=390, height=844, http_credentials=("analis", analyst))
        await phone.page.goto(f"{server.url}/dashboard?period=2022-Q1", wait_until="load")
        assert await phone.page.evaluate("document.documentElement.scrollWidth") <= 390
        await phone.page.screenshot(path=artifacts / "dashboard-phone.png", full_page=True)

        await desk.page.goto(f"{server.url}/dashboard?period=2022-Q1", wait_until="load")
        pdf = await desk.page.pdf(format="A4", print_background=False)
        (artifacts / "dashboard-2022-Q1.pdf").write_bytes(pdf)
        assert pdf.startswith(b"%PDF")
        await desk.page.emulate_media(media="print")
        assert await desk.page.locator("form.picker").is_hidden()
    finally:
        server.stop()


@pytest.mark.timeout(1200)
@pytest.mark.xdist_group("published")
async def test_report_as_html_is_one_file_with_the_same_charts(
        published: BackingServices, new_page: NewPage, artifacts: Path) -> None:
    output = artifacts / "report-2022-Q1.html"
    code, _out, err = await run_cli(published.env(), "report", "--period", "2022-Q1",
                                   "--format", "html", "--output", str(output))
    assert code == 0, err
    html = output.read_text()
    assert "<script" not in html
    assert 'src="http' not in html
    assert 'href="http' not in html
    analyst = await published.token("analyst", name="report-reader")
    async with running_app(published) as client:
        summary = (await client.get("/v1/metrics/summary", params={"period": "2022-Q1"},
                                    headers=bearer(analyst))).json()
    viewer = await new_page()
    await viewer.page.goto(output.as_uri(), wait_until="load")
    assert_numbers_are_the_summarys(await viewer.page.evaluate(SHOWN), summary)
    labels = set(await viewer.page.eval_on_selector_all(
        "svg.chart", "charts => charts.map(c => c.getAttribute('aria-label'))"))
    assert labels >= CHARTS
    assert viewer.hosts() == set()  # nothing fetched: the file holds everything
    await viewer.page.screenshot(path=artifacts / "report-2022-Q1.png", full_page=True)
    assert "| March 2022 | 294 |" in (await run_cli(
        published.env(), "report", "--period", "2022-Q1"))[1]  # Markdown stays the default


def test_text_partners_typed_is_escaped() -> None:
    hostile = '<img src=x onerror="alert(1)">&'
    summary = Summary.model_validate({
        "period": {"from": date(2022, 1, 1), "to": date(2022, 3, 31)},
        "as_of": datetime(2022, 3, 31, tzinfo=UTC), "contacts": 1,
        "contacts_by_kind": {"report": 1, "rapid_response": 0, "own_initiative": 0,
                             "consultation": 0, "copy_letter": 0},
        "received": 1, "received_by_month": {"2022-01": 1, "2022-02": 0, "2022-03": 0},
        "received_by_channel": {"complaint_post": 1}, "received_by_substance": {hostile: 1},
        "received_by_agency": {hostile: 1}, "peak_month": None, "on_the_spot_locations": 0,
        "registered": 0, "handled": 1, "carried_over": 0, "carried_over_by_year": {},
        "closed": 0, "closed_by_stage": {}, "closed_by_reason": {},
        "examination": {"handled": 0, "handled_by_received_year": {}, "closed": 0},
        "closure_rate": 0.0, "targets": {"closures": None, "examination_closures": None},
        "backlog_at_end": {hostile: 1},
        "liaison": {hostile: {"requests": 1, "responses": 0, "median_response_hours": None,
                              "overdue_at_end": 1}},
        "median_days_to_close": {}})
    html = page.render(summary, hostile, picker="")
    assert hostile not in html
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in html


async def test_the_dashboard_needs_a_readers_token(services: BackingServices) -> None:
    liaison = await services.token("liaison", agency="pln-uiw-babel")
    analyst = await services.token("analyst")
    async with running_app(services) as client:
        assert (await client.get("/dashboard", headers=bearer(liaison))).status_code == 403
        empty = await client.get("/dashboard", headers=bearer(analyst))
        assert empty.status_code == 200
        assert empty.headers["content-type"].startswith("text/html")
        assert "figures for 20" in empty.text  # the current quarter by default
        bad = await client.get("/dashboard", params={"period": "2022-Q5"},
                               headers=bearer(analyst))
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
