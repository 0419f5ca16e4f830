"""Every definition of METRICS.md, with its edges, through the public API."""

from __future__ import annotations

import csv
import io
import json

import jsonschema
from sqlalchemy import text

from metrics_worker import counts
from metrics_worker.schemas import Summary
from tests.metrics_worker.helpers import Importer
from tests.support import BackingServices, bearer, running_app


async def test_local_time_decides_the_month_and_the_quarter(history: Importer) -> None:
    # 06:00 on 1 April in Jakarta is still 31 March in UTC: it belongs to April.
    await history.receive("2022-04-01T06:00:00+07:00")
    await history.receive("2022-03-31T23:30:00+07:00")
    await history.receive("2022-01-01T00:00:00+07:00", kind="consultation")
    await history.settled(3, 0)
    q1 = await history.summary(period="2022-Q1")
    assert q1["period"] == {"from": "2022-01-01", "to": "2022-03-31"}
    assert q1["received"] == 1
    assert q1["received_by_month"] == {"2022-01": 0, "2022-02": 0, "2022-03": 1}
    assert q1["contacts"] == 2
    assert q1["contacts_by_kind"] == {"report": 1, "rapid_response": 0,
                                      "own_initiative": 0, "consultation": 1,
                                      "copy_letter": 0}
    april = await history.summary(period="2022-04")
    assert april["received_by_month"] == {"2022-04": 1}
    same = await history.summary(**{"from": "2022-04-01", "to": "2022-04-30"})
    assert same["received"] == april["received"] == 1
    year = await history.summary(period="2022")
    assert len(year["received_by_month"]) == 12
    assert year["received"] == 2


async def test_peak_month_takes_the_earliest_and_the_alphabetically_first(
    history: Importer,
) -> None:
    for at, substance in [("2022-01-10T10:00:00+07:00", "land"),
                          ("2022-01-11T10:00:00+07:00", "health"),
                          ("2022-02-10T10:00:00+07:00", "police"),
                          ("2022-02-11T10:00:00+07:00", "police")]:
        await history.receive(at, substance=substance)
    await history.settled(4, 0)
    summary = await history.summary(period="2022-Q1")
    assert summary["peak_month"] == {"month": "2022-01", "received": 2,
                                     "top_substance": "health"}
    assert summary["received_by_substance"] == {"health": 1, "land": 1, "police": 2}
    empty = await history.summary(period="2023-Q1")
    assert empty["peak_month"] is None
    assert empty["closure_rate"] == 0
    # As the OpenAPI document describes it: null is a valid peak_month, and said to be.
    document = (await history.client.get("/openapi.json")).json()
    peak = document["components"]["schemas"]["Summary"]["properties"]["peak_month"]
    assert "`null` when the period has no received report" in peak["description"]
    for answer in (summary, empty):
        jsonschema.validate(answer, {**document, "$ref": "#/components/schemas/Summary"},
                            cls=jsonschema.Draft202012Validator)


async def test_on_the_spot_locations_are_distinct_places(history: Importer) -> None:
    places = ["Pasar Pangkalpinang", "  pasar PANGKALPINANG ", "RSUD Depati Hamzah",
              "Kantor Samsat Sungailiat"]
    for i, place in enumerate(places):
        await history.receive(f"2022-02-0{i + 1}T10:00:00+07:00", channel="on_the_spot",
                              kind="consultation" if i == 3 else "report",
                              location={"regency": "Bangka", "place": place})
    await history.receive("2022-02-09T10:00:00+07:00", channel="walk_in",
                          location={"place": "Elsewhere"})
    await history.settled(5, 0)
    summary = await history.summary(period="2022-Q1")
    assert summary["on_the_spot_locations"] == 3


async def test_spellings_of_one_place_count_once(history: Importer) -> None:
    spellings = ["Kantor Kelurahan Bukit Intan", "kantor  kelurahan\tbukit intan",
                 "KANTOR KELURAHAN BUKIT\u00a0INTAN", "Kantor Kelurahan Bukit\u200b Intan",
                 "\uff2b\uff41\uff4e\uff54\uff4f\uff52 Kelurahan Bukit Intan",
                 "Kantor Kelurahan Bukit Intan\ufeff"]
    for hour, place in enumerate(spellings, start=8):
        await history.receive(f"2022-03-02T{hour:02d}:00:00+07:00", channel="on_the_spot",
                              location={"regency": "Pangkalpinang", "place": place})
    await history.receive("2022-03-02T16:00:00+07:00", channel="on_the_spot",
                          location={"regency": "Pangkalpinang", "place": "Pasar Pagi"})
    await history.settled(len(spellings) + 1, 0)
    summary = await history.summary(period="2022-03")
    assert summary["on_the_spot_locations"] == 2


async def test_case_figures_carry_over_and_close(history: Importer) -> None:
    client, admin = history.client, history.admin
    old = await history.receive("2020-06-15T10:00:00+07:00")          # open two years on
    prior = await history.receive("2021-11-02T10:00:00+07:00")        # examined from 2021
    closed_before = await history.receive("2021-12-01T10:00:00+07:00")
    fresh = await history.receive("2022-02-01T10:00:00+07:00")
    rejected = await history.receive("2022-03-01T10:00:00+07:00")
    resolved = await history.receive("2022-01-05T10:00:00+07:00")
    await history.opened(old, prior, closed_before, fresh, rejected, resolved)

    await history.act(closed_before, "reject", "2021-12-20T10:00:00+07:00",
                      reason="duplicate")
    await history.act(prior, "register", "2021-11-10T10:00:00+07:00")
    await history.act(prior, "start_examination", "2021-12-01T10:00:00+07:00",
                      assignee="asisten.1")
    await history.act(prior, "close", "2022-02-15T10:00:00+07:00",
                      reason="resolved_by_agency")
    await history.act(fresh, "register", "2022-02-02T10:00:00+07:00")
    await history.act(fresh, "start_examination", "2022-02-03T10:00:00+07:00",
                      assignee="asisten.2")
    await history.act(fresh, "request_clarification", "2022-02-04T08:00:00+07:00",
                      note="Mohon penjelasan")
    await history.act(fresh, "respond", "2022-02-04T18:00:00+07:00", note="Sudah",
                      resolution="explained")
    await history.act(rejected, "reject", "2022-03-02T10:00:00+07:00",
                      reason="out_of_jurisdiction")
    await history.act(resolved, "register", "2022-01-06T10:00:00+07:00")
    await history.act(resolved, "start_examination", "2022-01-07T10:00:00+07:00",
                      assignee="asisten.2")
    await history.act(resolved, "find_maladministration", "2022-01-20T10:00:00+07:00",
                      maladministration="undue_delay")
    await history.act(resolved, "close", "2022-03-20T10:00:00+07:00",
                      reason="corrective_action_completed")
    await history.settled(6, 13)

    summary = await history.summary(period="2022-Q1")
    assert summary["registered"] == 2
    assert summary["handled"] == 5
    assert summary["carried_over"] == 2
    assert summary["carried_over_by_year"] == {"2020": 1, "2021": 1}
    assert summary["closed"] == 3
    assert summary["closed_by_stage"] == {"examination": 1, "resolution": 1,
                                          "verification": 1}
    assert summary["closed_by_reason"] == {"corrective_action_completed": 1,
                                           "out_of_jurisdiction": 1,
                                           "resolved_by_agency": 1}
    assert summary["closure_rate"] == round(3 / 5, 4)
    assert summary["examination"] == {"handled": 3,
                                      "handled_by_received_year": {"2021": 1, "2022": 2},
                                      "closed": 2}
    assert summary["backlog_at_end"] == {"agency_responded": 1, "received": 1}
    assert summary["liaison"] == {"pln-uiw-babel": {
        "requests": 1, "responses": 1, "median_response_hours": 10.0, "overdue_at_end": 0}}
    assert summary["median_days_to_close"]["verification"] == 1.0
    assert summary["targets"] == {"closures": None, "examination_closures": None}

    target = await client.put("/v1/metrics/targets/2022-Q1",
                              json={"closures": 4, "examination_closures": 3},
                              headers=bearer(admin))
    assert target.status_code == 200, target.text
    with_target = await history.summary(period="2022-Q1")
    assert with_target["targets"] == {
        "closures": {"target": 4, "actual": 3, "rate": 0.75},
        "examination_closures": {"target": 3, "actual": 2, "rate": 0.6667}}
    # The endpoint writes the document itself: the model's own JSON, field for field, in order.
    answered = await client.get("/v1/metrics/summary", params={"period": "2022-Q1"},
                                headers=bearer(admin))
    as_model = Summary.model_validate_json(answered.content).model_dump(mode="json",
                                                                       by_alias=True)
    assert json.dumps(answered.json()) == json.dumps(as_model)
    by_range = await history.summary(**{"from": "2022-01-01", "to": "2022-03-31"})
    assert by_range["targets"] == with_target["targets"]
    fetched = await client.get("/v1/metrics/targets/2022-Q1", headers=bearer(admin))
    assert fetched.json()["closures"] == 4
    missing = await client.get("/v1/metrics/targets/2022-Q2", headers=bearer(admin))
    assert missing.status_code == 404
    await _every_measure_is_summed_or_left_out_by_name(history)


async def _every_measure_is_summed_or_left_out_by_name(history: Importer) -> None:
    """The summary reads the measures it names (``counts.SUMMED``): a measure the projection
    counts must be one of them, the places (counted apart) or a monthly figure's, so that a
    new one is not left out of the summary unnoticed."""
    app = history.client.app  # type: ignore[attr-defined]
    async with app.state.database.transaction() as session:
        counted = {row[0] for row in await session.execute(text(
            "SELECT DISTINCT measure FROM metrics.daily_counts UNION "
            "SELECT DISTINCT measure FROM metrics.period_counts"))}
    monthly = {*counts.CONTACTS_BY.values(), *counts.RECEIVED_BY.values(),
               *counts.REGISTERED_BY.values(), *counts.CLOSED_BY.values()}
    assert {counts.CONTACTS, counts.CLOSED_STAGE, counts.CLARIFICATION_REQUESTED,
            counts.REGISTERED_BY["agency"]} <= counted
    assert counted <= {*counts.SUMMED, counts.ON_THE_SPOT_PLACE, *monthly}


async def test_monthly_rows_in_json_and_csv(history: Importer) -> None:
    client, admin = history.client, history.admin
    first = await history.receive("2022-01-10T10:00:00+07:00", channel="website")
    await history.receive("2022-03-10T10:00:00+07:00", channel="walk_in")
    await history.receive("2022-03-11T10:00:00+07:00", channel="walk_in",
                          kind="copy_letter")
    await history.opened(first)
    await history.act(first, "register", "2022-02-01T10:00:00+07:00")
    await history.settled(3, 1)
    params = {"from": "2022-01-01", "to": "2022-03-31", "group_by": "channel"}
    rows = (await client.get("/v1/metrics/monthly", params=params,
                             headers=bearer(admin))).json()["rows"]
    assert rows == [
        {"month": "2022-01", "group": "walk_in", "contacts": 0, "received": 0,
         "registered": 0, "closed": 0},
        {"month": "2022-02", "group": "walk_in", "contacts": 0, "received": 0,
         "registered": 0, "closed": 0},
        {"month": "2022-03", "group": "walk_in", "contacts": 2, "received": 1,
         "registered": 0, "closed": 0},
        {"month": "2022-01", "group": "website", "contacts": 1, "received": 1,
         "registered": 0, "closed": 0},
        {"month": "2022-02", "group": "website", "contacts": 0, "received": 0,
         "registered": 1, "closed": 0},
        {"month": "2022-03", "group": "website", "contacts": 0, "received": 0,
         "registered": 0, "closed": 0},
    ]
    as_csv = await client.get("/v1/metrics/monthly", params=params,
                              headers={**bearer(admin), "Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.content.startswith(b"month,group,contacts,received,registered,closed\r\n")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [dict(r) for r in parsed] == [{k: str(v) for k, v in r.items()} for r in rows]
    plain = await client.get("/v1/metrics/monthly", params={
        "from": "2022-01-01", "to": "2022-02-28", "format": "csv"}, headers=bearer(admin))
    assert plain.text.splitlines()[1:] == ["2022-01,,1,1,0,0", "2022-02,,0,0,1,0"]


async def test_bad_periods_and_roles(services: BackingServices) -> None:
    partner = await services.token("partner")
    analyst = await services.token("analyst")
    admin = await services.token("admin")
    async with running_app(services) as client:
        for params in ({"period": "2022-Q5"}, {"period": "22"}, {},
                       {"from": "2022-03-01", "to": "2022-01-01"},
                       {"period": "2022", "from": "2022-01-01", "to": "2022-01-31"}):
            response = await client.get("/v1/metrics/summary", params=params,
                                        headers=bearer(analyst))
            assert response.status_code == 422, params
        denied = await client.get("/v1/metrics/summary", params={"period": "2022"},
                                  headers=bearer(partner))
        assert denied.status_code == 403
        write = await client.put("/v1/metrics/targets/2022", json={"closures": 1},
                                 headers=bearer(analyst))
        assert write.status_code == 403
        # A count is a whole JSON number: true, "600" or 600.5 is a wrong type, not 1 or 600.
        for wrong in ({"closures": True}, {"closures": "600"}, {"examination_closures": 60.5},
                      {"closures": 1e300}):
            refused = await client.put("/v1/metrics/targets/2022", json=wrong,
                                       headers=bearer(admin))
            assert refused.status_code == 422, wrong
            assert refused.json()["errors"][0]["field"] == f"/{next(iter(wrong))}"
        stored = await client.get("/v1/metrics/targets/2022", headers=bearer(admin))
        assert stored.status_code == 404
        # ... while 600.0 and 6e2 are JSON's spellings of the integer 600.
        for body in (b'{"closures": 600.0}', b'{"closures": 6e2}'):
            taken = await client.put("/v1/metrics/targets/2022", content=body, headers={
                **bearer(admin), "content-type": "application/json"})
            assert taken.status_code == 200, taken.text
            assert taken.json()["closures"] == 600


async def test_a_bad_period_in_the_targets_path_is_named_where_it_was_sent(
        services: BackingServices) -> None:
    """API.md: a validation error's ``field`` points at what the client sent: the period of
    ``PUT /v1/metrics/targets/{period}`` is in the path, whether its form or its year is wrong."""
    admin = await services.token("admin")
    async with running_app(services) as client:
        for period in ("0000", "1989", "2201-Q1", "2022-Q5", "22"):
            refused = await client.put(f"/v1/metrics/targets/{period}",
                                       json={"closures": 1}, headers=bearer(admin))
            assert refused.status_code == 422, (period, refused.text)
            assert [e["field"] for e in refused.json()["errors"]] == ["/path/period"], \
                (period, refused.text)
