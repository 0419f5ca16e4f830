"""A period's figures as one HTML page: the dashboard, and ``aduan report --format html``.

One self-contained document (styles inline, charts as inline SVG, no script), readable on a
phone and printable on A4. A pure function of a ``Summary``: the numbers are the summary's.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from metrics_worker.charts import Bar, Goal, against_target, bars, columns
from metrics_worker.formats import figure_rows
from metrics_worker.report import MONTH_NAMES, STATUS_NAMES, percent
from metrics_worker.schemas import Summary

TOP_AGENCIES = 10
STAGES = ("verification", "examination", "resolution")

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",Arial,sans-serif;
 margin:0;color:#1b1f24;background:#f4f6f8;line-height:1.4}
header{background:#123c69;color:#fff;padding:12px 16px}
header h1{font-size:1.25rem;margin:0}
header p{margin:4px 0 0;font-size:.9rem;opacity:.9}
main{max-width:1100px;margin:0 auto;padding:12px}
form.picker{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:8px 0 12px}
form.picker label{display:flex;flex-direction:column;font-size:.85rem}
form.picker input,form.picker button{font:inherit;padding:6px 8px;min-height:36px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.tile{background:#fff;border-radius:6px;padding:10px;border:1px solid #d8dee4}
.tile b{display:block;font-size:1.5rem}
.tile span{font-size:.8rem;color:#57606a}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,480px),1fr));gap:12px;
 margin-top:12px}
section.card{background:#fff;border-radius:6px;padding:10px 12px;border:1px solid #d8dee4}
section.card h2{font-size:1rem;margin:0 0 6px}
svg.chart{width:100%;height:auto;display:block}
svg .label{font-size:13px;fill:#1b1f24}
svg .value{font-size:13px;font-weight:600;fill:#1b1f24}
svg .note{font-size:13px;fill:#1b1f24}
svg .axis{stroke:#8c959f}
svg .target{stroke:#b8453a;stroke-width:3}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eaeef2;vertical-align:top;
 overflow-wrap:anywhere}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.empty{color:#57606a;font-style:italic}
details{margin-top:12px;background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:8px}
footer{font-size:.8rem;color:#57606a;padding:12px 16px}
@page{size:A4;margin:12mm}
@media print{
 body{background:#fff;font-size:10pt}
 header{background:none;color:#000;padding:0 0 6px;border-bottom:2px solid #000}
 form.picker{display:none}
 main{max-width:none;padding:0}
 .grid{display:block}
 section.card,.tile{border:1px solid #999;break-inside:avoid;margin-bottom:8px}
 .tiles{grid-template-columns:repeat(5,1fr)}
 details{break-before:page}
 details>summary{list-style:none}
}
"""


def _words(key: str) -> str:
    return key.replace("_", " ")


def _month(key: str) -> str:
    year, month = key.split("-")
    return f"{MONTH_NAMES[int(month) - 1][:3]} {year}"


def _ranked(figure: str, counts: Mapping[str, float], *, limit: int | None = None,
            names: Mapping[str, str] | None = None) -> list[Bar]:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [Bar((names or {}).get(k, _words(k)), v, figure, k) for k, v in ordered]


def _cell(figure: str, key: str, value: object, shown: str | None = None) -> str:
    text = "" if value is None else str(value)
    return (f'<td class="n" data-figure="{escape(figure)}" data-key="{escape(key)}" '
            f'data-value="{escape(text)}">{escape(shown if shown is not None else text)}</td>')


def _tile(figure: str, key: str, value: object, caption: str, shown: str | None = None) -> str:
    text = str(value)
    return (f'<div class="tile"><b data-figure="{escape(figure)}" data-key="{escape(key)}" '
            f'data-value="{escape(text)}">{escape(shown or text)}</b>'
            f"<span>{escape(caption)}</span></div>")


def _card(title: str, body: str) -> str:
    return f'<section class="card"><h2>{escape(title)}</h2>{body}</section>'


def _closures(summary: Summary) -> str:
    stages = summary.closed_by_stage
    parts = [Bar(stage, stages[stage], "closed_by_stage", stage)
             for stage in STAGES if stage in stages]
    targets = summary.targets
    goals = [
        Goal("all closures", parts,
             Bar("target", targets.closures.target, "targets.closures", "target")
             if targets.closures else None,
             Bar("rate", targets.closures.rate, "targets.closures", "rate",
                 f"{percent(targets.closures.rate)} of target") if targets.closures else None),
        Goal("examination closures", [p for p in parts if p.key != "verification"],
             Bar("target", targets.examination_closures.target,
                 "targets.examination_closures", "target")
             if targets.examination_closures else None,
             Bar("rate", targets.examination_closures.rate, "targets.examination_closures",
                 "rate", f"{percent(targets.examination_closures.rate)} of target")
             if targets.examination_closures else None),
    ]
    return against_target("Closures against target, by stage", goals)


def _liaison(summary: Summary) -> str:
    if not summary.liaison:
        return '<p class="empty">no clarification was requested in the period</p>'
    medians = {agency: f.median_response_hours for agency, f in summary.liaison.items()
               if f.median_response_hours is not None}
    chart = bars("Median hours to a liaison's response, by agency", [
        Bar(agency, hours, f"liaison.{agency}", "median_response_hours", f"{hours} h")
        for agency, hours in sorted(medians.items(), key=lambda item: (-item[1], item[0]))])
    rows = "".join(
        f"<tr><th>{escape(agency)}</th>"
        + _cell(f"liaison.{agency}", "requests", f.requests)
        + _cell(f"liaison.{agency}", "responses", f.responses)
        + _cell(f"liaison.{agency}", "median_response_hours", f.median_response_hours,
                "-" if f.median_response_hours is None else None)
        + _cell(f"liaison.{agency}", "overdue_at_end", f.overdue_at_end) + "</tr>"
        for agency, f in sorted(summary.liaison.items()))
    table = ('<table><thead><tr><th>agency</th><th class="n">requests</th>'
             '<th class="n">responses</th><th class="n">median hours</th>'
             f'<th class="n">overdue at end</th></tr></thead><tbody>{rows}</tbody></table>')
    return chart + table


def _all_figures(summary: Summary) -> str:
    rows = "".join(
        f"<tr><td>{escape(figure)}</td><td>{escape(key)}</td>{_cell(figure, key, value)}</tr>"
        for figure, key, value in figure_rows(summary.model_dump(mode="json", by_alias=True)))
    return ("<details open><summary>Every figure (as in <code>GET /v1/metrics/summary"
            "</code>)</summary><table><thead><tr><th>figure</th><th>key</th>"
            f'<th class="n">value</th></tr></thead><tbody>{rows}</tbody></table></details>')


def render(summary: Summary, label: str, *, picker: str = "", footer: str = "") -> str:
    """The whole page; ``picker`` is the period form (the dashboard), empty in a report."""
    first, last = summary.period.from_, summary.period.to
    as_of = summary.as_of.strftime("%Y-%m-%d %H:%M UTC") if summary.as_of else "no event yet"
    exam = summary.examination
    tiles = "".join([
        _tile("received", "", summary.received, "reports received"),
        _tile("contacts", "", summary.contacts, "contacts of every kind"),
        _tile("registered", "", summary.registered, "registered"),
        _tile("handled", "", summary.handled, "handled (open at some moment)"),
        _tile("closed", "", summary.closed, "closed"),
        _tile("closure_rate", "", summary.closure_rate, "closed of handled",
              percent(summary.closure_rate)),
        _tile("carried_over", "", summary.carried_over, "carried over from before"),
        _tile("examination", "handled", exam.handled, "in examination"),
        _tile("examination", "closed", exam.closed, "closed after examination"),
        _tile("on_the_spot_locations", "", summary.on_the_spot_locations,
              "on-the-spot locations"),
    ])
    months = [Bar(_month(m), n, "received_by_month", m)
              for m, n in summary.received_by_month.items()]
    backlog = _ranked("backlog_at_end", summary.backlog_at_end, names=STATUS_NAMES)
    cards = "".join([
        _card("Reports received by month", columns("Reports received by month", months)),
        _card("By channel", bars("Reports received by channel",
                                 _ranked("received_by_channel", summary.received_by_channel))),
        _card("By subject", bars("Reports received by subject",
                                 _ranked("received_by_substance",
                                         summary.received_by_substance))),
        _card("Closures against target", _closures(summary)),
        _card(f"Open at the end of the period: {sum(summary.backlog_at_end.values())}",
              bars("Open reports at the end of the period, by status", backlog)),
        _card(f"Top {TOP_AGENCIES} agencies reported",
              bars("Reports received by agency", _ranked(
                  "received_by_agency", summary.received_by_agency, limit=TOP_AGENCIES))),
        _card("Liaison officers: response times", _liaison(summary)),
        _card("Median days from receipt to closure, by stage", bars(
            "Median days to close, by closure stage",
            [Bar(stage, days, "median_days_to_close", stage, f"{days} days")
             for stage, days in summary.median_days_to_close.items()])),
    ])
    title = f"aduan: figures for {label}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(first.isoformat())} to "
        f"{escape(last.isoformat())}, office time · figures as of {escape(as_of)}</p></header>"
        f'<main>{picker}<div class="tiles">{tiles}</div><div class="grid">{cards}</div>'
        f"{_all_figures(summary)}</main><footer>{footer}</footer></body></html>")
