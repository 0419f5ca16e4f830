"""Assembling the figures of METRICS.md from the read model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import counts, figures, histograms, repository
from metrics_worker.periods import Period
from metrics_worker.schemas import Summary
from shared.db import on_driver
from shared.problems import invalid
from shared.vocabulary import CASE_OPENING_KINDS, Kind, utc_text

# Rates are given to 4 decimals (METRICS.md).
RATE_SCALE = 10_000


def rate(part: int, whole: int) -> float:
    """``part / whole`` to 4 decimals (0 when ``whole`` is 0), an exact half rounded away from
    zero as a spreadsheet's ROUND and PostgreSQL's numeric ``round`` do: 1/32 is 0.0313.

    Rounded from the exact fraction: ``round`` on the quotient's float rounds halves to even
    and lets the float's binary error decide, so 1/32 came out 0.0312 but 1/160, as exact a
    half, 0.0063.
    """
    if not whole:
        return 0.0
    # floor(|part / whole| * scale + 1/2) in integers: exact, however large the counts.
    units = (2 * abs(part) * RATE_SCALE + abs(whole)) // (2 * abs(whole))
    # An int divided by an int is the float nearest the exact decimal.
    return (units if part * whole >= 0 else -units) / RATE_SCALE


def peak_month(by_month: dict[str, int],
               top_substance: dict[str, str]) -> dict[str, Any] | None:
    if not any(by_month.values()):
        return None
    month = min(by_month, key=lambda m: (-by_month[m], m))  # most; earliest on a tie
    return {"month": month, "received": by_month[month],
            "top_substance": top_substance.get(month)}


def _nonzero(values: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(values.items()) if v}


def _difference(plus: dict[str, int], minus: dict[str, int]) -> dict[str, int]:
    return _nonzero({k: plus.get(k, 0) - minus.get(k, 0) for k in {*plus, *minus}})


async def summary(session: AsyncSession, period: Period, zone: ZoneInfo) -> Summary:
    """The figures as a ``Summary``, read in ``session``'s transaction (pages, reports)."""
    async with on_driver(session) as connection:
        return Summary.model_validate(await document(connection, period, zone))


async def document(connection: asyncpg.Connection, period: Period,
                   zone: ZoneInfo) -> dict[str, Any]:
    """The figures as the JSON document of ``Summary`` (its fields, in its order, with its
    aliases and its JSON values), built straight from the rows: the summary endpoint answers
    it as it is, without a model built and checked for each of its few hundred values."""
    start, end = period.bounds(zone)
    found = await figures.read(connection, period, start, end)
    medians = await found.middles.medians(connection, start, end)
    responses = medians.get(histograms.RESPONSE_HOURS, {})
    totals = found.totals
    within, before, through = totals.within, totals.before_start, totals.through_end

    by_month = {month: totals.by_month.get(month, 0) for month in period.months()}
    # Open at some moment of the period: received by its end, not closed before its start.
    handled = totals.total(through, counts.OPENED) - totals.total(before, counts.CLOSED)
    closed = totals.total(within, counts.CLOSED)
    stages = _nonzero(within.get(counts.CLOSED_STAGE, {}))
    examination_closed = stages.get("examination", 0) + stages.get("resolution", 0)
    carried = _difference(before.get(counts.OPENED, {}), before.get(counts.CLOSED, {}))
    examined = _difference(through.get(counts.EXAMINED, {}),
                           before.get(counts.CLOSED_EXAMINED, {}))
    # Overdue at the end: became overdue before it, minus those whose next step came before it.
    overdue = _difference(through.get(counts.OVERDUE_FROM, {}),
                          through.get(counts.OVERDUE_ENDED, {}))
    targets = found.targets or {}
    kinds = within.get(counts.CONTACTS, {})

    def figure(goal: int | None, actual: int) -> dict[str, Any] | None:
        return None if goal is None else {"target": goal, "actual": actual,
                                          "rate": rate(actual, goal)}

    def liaison(agency: str, requests: int) -> dict[str, Any]:
        answered = responses.get(agency)
        return {"requests": requests, "responses": answered[0] if answered else 0,
                "median_response_hours": round(answered[1], 2) if answered else None,
                "overdue_at_end": overdue.get(agency, 0)}

    return {
        "period": {"from": period.first.isoformat(), "to": period.last.isoformat()},
        "as_of": None if found.as_of is None else utc_text(found.as_of),
        "contacts": totals.total(within, counts.CONTACTS),
        "contacts_by_kind": {k.value: kinds.get(k.value, 0) for k in Kind},
        "received": sum(by_month.values()),
        "received_by_month": by_month,
        "received_by_channel": _nonzero(within.get(counts.RECEIVED_CHANNEL, {})),
        "received_by_substance": _nonzero(within.get(counts.RECEIVED_SUBSTANCE, {})),
        "received_by_agency": _nonzero(within.get(counts.RECEIVED_AGENCY, {})),
        "peak_month": peak_month(by_month, totals.top_substance),
        "on_the_spot_locations": totals.places,
        "registered": totals.total(within, counts.REGISTERED),
        "handled": handled,
        "carried_over": sum(carried.values()),
        "carried_over_by_year": carried,
        "closed": closed,
        "closed_by_stage": stages,
        "closed_by_reason": _nonzero(within.get(counts.CLOSED_REASON, {})),
        "examination": {"handled": sum(examined.values()),
                        "handled_by_received_year": examined,
                        "closed": examination_closed},
        "closure_rate": rate(closed, handled),
        "targets": {
            "closures": figure(targets.get("closures"), closed),
            "examination_closures": figure(targets.get("examination_closures"),
                                           examination_closed),
        },
        "backlog_at_end": _difference(through.get(counts.STATUS_IN, {}),
                                      through.get(counts.STATUS_OUT, {})),
        "liaison": {agency: liaison(agency, requests) for agency, requests in _nonzero(
            within.get(counts.CLARIFICATION_REQUESTED, {})).items()},
        "median_days_to_close": {
            stage: round(median, 2) for stage, (_, median)
            in sorted(medians.get(histograms.DAYS_TO_CLOSE, {}).items())},
    }


# The most rows one monthly answer may have (months x groups): 50 years by 166 agencies, or
# 10 years by 833. Beyond it the request is refused (422) before any row is built.
MAX_MONTHLY_ROWS = 100_000
MONTHLY_COLUMNS = ("month", "group", "contacts", "received", "registered", "closed")
MonthlyValues = tuple[str, str, int, int, int, int]
# The received reports of METRICS.md: the intakes that open a case.
REPORT_KINDS = sorted(kind.value for kind in CASE_OPENING_KINDS)
NOTHING = (0, 0, 0, 0)


async def monthly(session: AsyncSession, period: Period, group_by: str
                  ) -> Iterator[MonthlyValues]:
    """Rows in ``MONTHLY_COLUMNS`` order: every month for every group, produced lazily. Read
    from the counts the projection keeps by local day and month (``counts.CONTACTS_BY`` and
    the others), so the time grows with months x groups, not with the cases counted."""
    grouping = "kind" if group_by == "none" else group_by
    measures = (counts.CONTACTS_BY[grouping], counts.RECEIVED_BY.get(grouping),
                counts.REGISTERED_BY[grouping], counts.CLOSED_BY[grouping])
    months = period.months()
    groups = [""]
    async with on_driver(session) as connection:
        if group_by != "none":
            groups = await repository.monthly_groups(
                connection, period.first, period.last,
                (measures[0], measures[2], measures[3]))
            if len(months) * len(groups) > MAX_MONTHLY_ROWS:
                raise invalid("/query/group_by", (
                    f"{len(months)} months by {len(groups)} groups of {group_by} would be "
                    f"{len(months) * len(groups)} rows; at most {MAX_MONTHLY_ROWS} are "
                    "answered: choose a shorter range or another group_by"))
        found = {(row[0], row[1]): (row[2], row[3], row[4], row[5])
                 for row in await repository.monthly_counts(
                     connection, period.first, period.last, measures, group_by != "none",
                     REPORT_KINDS)}

    def produce() -> Iterator[MonthlyValues]:
        for group in groups:
            for month in months:
                values = found.get((month, group), NOTHING)
                yield month, group, values[0], values[1], values[2], values[3]

    return produce()
