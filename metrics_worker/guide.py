"""What the OpenAPI document says about the metrics operations, with worked examples."""

from __future__ import annotations

from shared.openapi import Guide

SUMMARY_EXAMPLE = {
    "period": {"from": "2022-01-01", "to": "2022-03-31"},
    "as_of": "2022-03-31T09:40:00Z",
    "contacts": 532,
    "contacts_by_kind": {"report": 470, "rapid_response": 7, "own_initiative": 3,
                         "consultation": 40, "copy_letter": 12},
    "received": 480,
    "received_by_month": {"2022-01": 90, "2022-02": 96, "2022-03": 294},
    "received_by_channel": {"complaint_post": 260, "on_the_spot": 41, "walk_in": 95},
    "received_by_substance": {"electricity": 231, "land": 52, "population_administration": 44},
    "received_by_agency": {"pln-uiw-babel": 231, "bpn-pangkalpinang": 52},
    "peak_month": {"month": "2022-03", "received": 294, "top_substance": "electricity"},
    "on_the_spot_locations": 15,
    "registered": 262,
    "handled": 497,
    "carried_over": 17,
    "carried_over_by_year": {"2021": 17},
    "closed": 213,
    "closed_by_stage": {"examination": 44, "resolution": 6, "verification": 163},
    "closed_by_reason": {"incomplete": 61, "resolved_by_agency": 30, "transferred": 40},
    "examination": {"handled": 93, "handled_by_received_year": {"2022": 82, "2021": 11},
                    "closed": 50},
    "closure_rate": 0.4286,
    "targets": {"closures": {"target": 260, "actual": 213, "rate": 0.8192},
                "examination_closures": {"target": 60, "actual": 50, "rate": 0.8333}},
    "backlog_at_end": {"awaiting_agency": 10, "in_examination": 33, "registered": 120},
    "liaison": {"pln-uiw-babel": {"requests": 21, "responses": 18,
                                  "median_response_hours": 76.5, "overdue_at_end": 3}},
    "median_days_to_close": {"examination": 41.2, "resolution": 63.0, "verification": 9.5},
}

GUIDES = {
    "GET /v1/metrics/summary": Guide(
        "Every figure of one period, as defined in the contract's METRICS.md: give `period` "
        "(`2022-Q1`, `2022-03`, `2022`) or `from` and `to` (dates, office time, at most 50 "
        "years). `?format=csv` or `Accept: text/csv` answers RFC 4180 CSV with one row per "
        "figure, `figure,key,value`: a value's key is its own name and the figure the dotted "
        "path to it (`received,,480`, `received_by_month,2022-03,294`, "
        "`targets.closures,rate,0.8192`, `liaison.pln-uiw-babel,requests,21`). An `Accept` "
        "admitting neither JSON nor CSV is 406. Roles: analyst, assistant, admin.\n\n"
        "Example: `GET /v1/metrics/summary?period=2022-Q1`.",
        SUMMARY_EXAMPLE),
    "GET /v1/metrics/monthly": Guide(
        "Contacts, received reports, registrations and closures by local month, for every "
        "group of `group_by` (`none`, `channel`, `substance`, `agency`, `kind`) with any row in "
        "the range; every month of the range appears for each group, zeros included. Columns, "
        "in order, in JSON and CSV alike: `month, group, contacts, received, registered, "
        "closed`. The answer is streamed; it may have at most 100,000 rows (months x groups): "
        "a larger one is refused with 422 before any row is built (narrow the range or group "
        "coarser). Read from counts the projection keeps by day and month (as the summary "
        "is), so its time grows with months x groups, not with the number of cases; a case "
        "given its agency later (`assign_agency`) is counted, contact, registration and "
        "closure alike, for the agency it has now. Roles: analyst, assistant, admin.\n\n"
        "Example: `GET /v1/metrics/monthly?from=2022-01-01&to=2022-03-31&group_by=channel` "
        "(add `&format=csv` for CSV).",
        {"rows": [{"month": "2022-01", "group": "complaint_post", "contacts": 41,
                   "received": 38, "registered": 20, "closed": 12},
                  {"month": "2022-02", "group": "complaint_post", "contacts": 44,
                   "received": 40, "registered": 25, "closed": 19}]}),
    "PUT /v1/metrics/targets/{period}": Guide(
        "Sets the closure targets of one period string (`2022-Q1`, `2022-03` or `2022`), "
        "replacing what was set before. The summary of exactly that period then compares "
        "closures (`closed`) and examination closures (`examination.closed`) with them. "
        "Roles: assistant, admin.\n\nExample: `PUT /v1/metrics/targets/2022-Q1`.",
        {"period": "2022-Q1", "closures": 260, "examination_closures": 60,
         "updated_at": "2022-01-03T02:00:00Z", "updated_by": "asisten.pvl.2"},
        request={"closures": 260, "examination_closures": 60}),
    "GET /v1/metrics/targets/{period}": Guide(
        "The closure targets set for one period string; 404 when none is set. CSV (one row: "
        "`period, closures, examination_closures, updated_at, updated_by`) with `?format=csv` "
        "or `Accept: text/csv`. Roles: analyst, assistant, admin.\n\n"
        "Example: `GET /v1/metrics/targets/2022-Q1`.",
        {"period": "2022-Q1", "closures": 260, "examination_closures": 60,
         "updated_at": "2022-01-03T02:00:00Z", "updated_by": "asisten.pvl.2"}),
    "GET /dashboard": Guide(
        "In a browser: `GET /dashboard?period=2022-Q1`.",
        "<!DOCTYPE html><html lang=\"en\"><head><title>aduan: figures for 2022-Q1</title>...",
        media="text/html"),
}
