"""The period summary in Markdown: a pure function of the summary."""

from __future__ import annotations

from typing import Any

from metrics_worker.report import percent, to_markdown
from metrics_worker.schemas import Summary

KINDS = {"report": 455, "rapid_response": 22, "own_initiative": 3, "consultation": 40,
         "copy_letter": 12}


def quarter(**overrides: Any) -> Summary:
    figures: dict[str, Any] = {
        "period": {"from": "2022-01-01", "to": "2022-03-31"},
        "as_of": "2022-04-20T03:00:00Z",
        "contacts": 532, "contacts_by_kind": KINDS, "received": 480,
        "received_by_month": {"2022-01": 90, "2022-02": 96, "2022-03": 294},
        "received_by_channel": {"complaint_post": 176, "walk_in": 100, "whatsapp": 204},
        "received_by_substance": {"electricity": 232, "land": 53, "police": 195},
        "received_by_agency": {"pln-uiw-babel": 232},
        "peak_month": {"month": "2022-03", "received": 294, "top_substance": "electricity"},
        "on_the_spot_locations": 15, "registered": 300, "handled": 497,
        "carried_over": 17, "carried_over_by_year": {"2021": 17},
        "closed": 213, "closed_by_stage": {"examination": 44, "resolution": 6,
                                           "verification": 163},
        "closed_by_reason": {"already_resolved": 70, "resolved_by_agency": 32},
        "examination": {"handled": 93, "handled_by_received_year": {"2021": 11, "2022": 82},
                        "closed": 50},
        "closure_rate": 0.4286,
        "targets": {"closures": {"target": 260, "actual": 213, "rate": 0.8192},
                    "examination_closures": None},
        "backlog_at_end": {"awaiting_agency": 12, "received": 118, "registered": 123},
        "liaison": {"pln-uiw-babel": {"requests": 10, "responses": 7,
                                      "median_response_hours": 60.0, "overdue_at_end": 2},
                    "polda-babel": {"requests": 3, "responses": 0,
                                    "median_response_hours": None, "overdue_at_end": 1}},
        "median_days_to_close": {"verification": 3.25},
    }
    figures.update(overrides)
    return Summary.model_validate(figures)


def test_the_published_quarter_reads_as_the_office_tells_it() -> None:
    text = to_markdown(quarter(), "2022-Q1")
    assert text.startswith("# Period summary 2022-Q1\n")
    assert "1 January 2022 to 31 March 2022" in text
    assert "**480** reports received" in text
    assert "40 consultations" in text
    assert "12 copied letters" in text
    for month, count in (("January 2022", 90), ("February 2022", 96), ("March 2022", 294)):
        assert f"| {month} | {count} |" in text
    assert "| **Total** | **480** |" in text
    assert "Peak month: **March 2022** with 294 reports; its main subject: **electricity**" in text
    assert "| complaint post | 176 |" in text
    assert "**15** distinct public-service locations" in text
    assert "**93** reports in examination" in text
    # Years received, newest first.
    assert text.index("| 2022 | 82 |") < text.index("| 2021 | 11 |")
    assert "**213** reports closed in the period (examination 44, resolution 6, " \
           "verification 163)" in text
    assert "**213** against a target of 260: **81.92 %** of target" in text
    assert "Examination closures: no target set for 2022-Q1" in text
    assert "Carried over from before 1 January 2022: **17** reports (2021: 17)" in text
    assert "Open at the end of the period: **253**" in text
    assert "| received, not yet verified | 118 |" in text
    assert "| pln-uiw-babel | 10 | 7 | 2.5 days (60 h) | 2 |" in text
    assert "| polda-babel | 3 | 0 | - | 1 |" in text
    assert "| **Total** | **13** | **7** | | **3** |" in text
    assert "Figures as of 2022-04-20 03:00 UTC" in text


def test_an_empty_period_says_so() -> None:
    empty = quarter(
        as_of=None, contacts=0, contacts_by_kind=dict.fromkeys(KINDS, 0), received=0,
        received_by_month={"2023-01": 0}, received_by_channel={}, received_by_substance={},
        received_by_agency={}, peak_month=None, on_the_spot_locations=0, handled=0,
        carried_over=0, carried_over_by_year={}, closed=0, closed_by_stage={},
        closed_by_reason={}, examination={"handled": 0, "handled_by_received_year": {},
                                          "closed": 0},
        closure_rate=0.0, targets={"closures": None, "examination_closures": None},
        backlog_at_end={}, liaison={}, median_days_to_close={},
        period={"from": "2023-01-01", "to": "2023-01-31"})
    text = to_markdown(empty)
    assert text.startswith("# Period summary 2023-01-01 to 2023-01-31\n")
    assert "No report was received in the period." in text
    assert "no event yet" in text
    assert "No clarification was requested" in text
    assert "Closures: no target set" in text
    assert "| **Total** | **0** |" in text


def test_percent_keeps_two_decimals() -> None:
    assert percent(0.8192) == "81.92 %"
    assert percent(1.1133) == "111.33 %"
    assert percent(0) == "0.00 %"
