"""The office's periodic summary in Markdown (``aduan report --period 2022-Q1``).

A pure function of a ``Summary`` (``metrics_worker.service.summary``): the same figures as
``GET /v1/metrics/summary``, laid out the way the quarterly note tells them. English, with the
office's own Indonesian names for its units and kinds of intake.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from metrics_worker.schemas import Summary, TargetFigure

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
STATUS_NAMES = {
    "received": "received, not yet verified",
    "awaiting_completion": "awaiting completion by the reporter",
    "registered": "registered",
    "in_examination": "in examination",
    "awaiting_agency": "awaiting the agency (clarification requested)",
    "agency_responded": "agency responded",
    "corrective_action": "corrective action",
}


def _day(value: date) -> str:
    return f"{value.day} {MONTH_NAMES[value.month - 1]} {value.year}"


def _month(key: str) -> str:
    year, month = key.split("-")
    return f"{MONTH_NAMES[int(month) - 1]} {year}"


def percent(rate: float) -> str:
    return f"{rate * 100:.2f} %"


def _words(key: str) -> str:
    return key.replace("_", " ")


def _table(header: tuple[str, str], rows: Iterable[tuple[str, object]],
           total: int | None = None) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if total is not None:
        lines.append(f"| **Total** | **{total}** |")
    return lines


def _by_count(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _breakdown(header: tuple[str, str], counts: Mapping[str, int],
               names: Mapping[str, str] | None = None) -> list[str]:
    """A table of counts, largest first, then a blank line; nothing when there are none."""
    if not counts:
        return []
    named = names or {}
    return [*_table(header, [(named.get(k, _words(k)), v) for k, v in _by_count(counts)]), ""]


def _target(name: str, figure: TargetFigure | None, label: str) -> str:
    if figure is None:
        return (f"- {name}: no target set for {label} "
                f"(`PUT /v1/metrics/targets/{label}`).")
    return (f"- {name}: **{figure.actual}** against a target of {figure.target}: "
            f"**{percent(figure.rate)}** of target.")


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 48:
        return f"{value:.1f} hours"
    return f"{value / 24:.1f} days ({value:.0f} h)"


def to_markdown(summary: Summary, label: str | None = None) -> str:
    """The summary of one period as a Markdown document."""
    first, last = summary.period.from_, summary.period.to
    label = label or f"{first.isoformat()} to {last.isoformat()}"
    kinds = {k.value: v for k, v in summary.contacts_by_kind.items()}
    out: list[str] = [f"# Period summary {label}", ""]
    as_of = (summary.as_of.strftime("%Y-%m-%d %H:%M UTC") if summary.as_of
             else "no event yet")
    out += [f"{_day(first)} to {_day(last)}, office time. Figures as of {as_of}, computed from "
            "the event log (definitions: METRICS.md).", ""]

    out += ["## Reports received (Penerimaan dan Verifikasi Laporan)", "",
            f"**{summary.received}** reports received (reports, rapid responses and own-initiative "
            f"investigations), out of {summary.contacts} contacts; besides them "
            f"{kinds.get('consultation', 0)} consultations (konsultasi non laporan) and "
            f"{kinds.get('copy_letter', 0)} copied letters (tembusan).", ""]
    out += _table(("Month", "Reports received"),
                  [(_month(m), n) for m, n in summary.received_by_month.items()],
                  total=summary.received)
    out.append("")
    peak = summary.peak_month
    if peak is None:
        out += ["No report was received in the period.", ""]
    else:
        subject = _words(peak.top_substance) if peak.top_substance else "none"
        out += [f"Peak month: **{_month(peak.month)}** with {peak.received} reports; its main "
                f"subject: **{subject}**.", ""]
    out += _breakdown(("Channel", "Reports"), summary.received_by_channel)
    out += _breakdown(("Subject", "Reports"), summary.received_by_substance)

    out += ["## Ombudsman On the Spot", "",
            f"On-the-spot desks at **{summary.on_the_spot_locations}** distinct public-service "
            "locations.", ""]

    exam = summary.examination
    out += ["## Examination (Pemeriksaan)", "",
            f"**{exam.handled}** reports in examination during the period, by the year they were "
            "received:", ""]
    years = sorted(exam.handled_by_received_year.items(), reverse=True)
    out += _table(("Year received", "Reports in examination"), years, total=exam.handled)
    out += ["", f"Closed from examination or resolution in the period: {exam.closed}.", ""]

    out += ["## Closures against target", "",
            f"**{summary.closed}** reports closed in the period"
            + (" (" + ", ".join(f"{_words(k)} {v}" for k, v in summary.closed_by_stage.items())
               + ")" if summary.closed_by_stage else "") + ".", ""]
    out.append(_target("Closures", summary.targets.closures, label))
    out.append(_target("Examination closures", summary.targets.examination_closures, label))
    out += [f"- Closure rate over every report handled ({summary.handled}): "
            f"{percent(summary.closure_rate)}.", ""]
    out += _breakdown(("Reason", "Closed"), summary.closed_by_reason)
    if summary.median_days_to_close:
        out += _table(("Closed at stage", "Median days from receipt"),
                      [(_words(k), f"{v:.1f}") for k, v in summary.median_days_to_close.items()])
        out.append("")

    out += ["## Carry-over and backlog", "",
            f"Carried over from before {_day(first)}: **{summary.carried_over}** reports"
            + (" (" + ", ".join(f"{year}: {n}" for year, n in
                                sorted(summary.carried_over_by_year.items(), reverse=True))
               + ")" if summary.carried_over_by_year else "") + ".", ""]
    backlog = summary.backlog_at_end
    out += [f"Open at the end of the period: **{sum(backlog.values())}**.", ""]
    out += _breakdown(("Status", "Reports"), backlog, STATUS_NAMES)

    out += ["## Liaison officers (narahubung): response times", ""]
    if not summary.liaison:
        out += ["No clarification was requested from an agency in the period.", ""]
    else:
        out += ["| Agency | Requests | Responses | Median response | Overdue at end |",
                "|---|---:|---:|---:|---:|"]
        for agency, figures in sorted(summary.liaison.items()):
            out.append(f"| {agency} | {figures.requests} | {figures.responses} | "
                       f"{_hours(figures.median_response_hours)} | {figures.overdue_at_end} |")
        requests = sum(f.requests for f in summary.liaison.values())
        responses = sum(f.responses for f in summary.liaison.values())
        overdue = sum(f.overdue_at_end for f in summary.liaison.values())
        out += [f"| **Total** | **{requests}** | **{responses}** | | **{overdue}** |", ""]
    return "\n".join(out).rstrip() + "\n"
