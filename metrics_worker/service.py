"""Assembling the figures of METRICS.md from the read model."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import counts, figures, histograms, repository
from metrics_worker.periods import Period
from metrics_worker.schemas import (
    ExaminationOut,
    LiaisonFigures,
    PeakMonth,
    PeriodOut,
    Summary,
    TargetFigure,
    TargetsOut,
)
from shared.problems import invalid
from shared.vocabulary import Kind


def rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def peak_month(by_month: dict[str, int], top_substance: dict[str, str]) -> PeakMonth | None:
    if not any(by_month.values()):
        return None
    month = min(by_month, key=lambda m: (-by_month[m], m))  # most; earliest on a tie
    return PeakMonth(month=month, received=by_month[month],
                     top_substance=top_substance.get(month))


def _nonzero(values: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(values.items()) if v}


def _difference(plus: dict[str, int], minus: dict[str, int]) -> dict[str, int]:
    return _nonzero({k: plus.get(k, 0) - minus.get(k, 0) for k in {*plus, *minus}})


async def summary(session: AsyncSession, period: Period, zone: ZoneInfo) -> Summary:
    start, end = period.bounds(zone)
    found = await figures.read(session, period, start, end)
    medians = await found.middles.medians(session, start, end)
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

    def figure(goal: int | None, actual: int) -> TargetFigure | None:
        return None if goal is None else TargetFigure(target=goal, actual=actual,
                                                      rate=rate(actual, goal))

    return Summary(
        period=PeriodOut(from_=period.first, to=period.last),
        as_of=found.as_of,
        contacts=totals.total(within, counts.CONTACTS),
        contacts_by_kind={k: within.get(counts.CONTACTS, {}).get(k.value, 0) for k in Kind},
        received=sum(by_month.values()),
        received_by_month=by_month,
        received_by_channel=_nonzero(within.get(counts.RECEIVED_CHANNEL, {})),
        received_by_substance=_nonzero(within.get(counts.RECEIVED_SUBSTANCE, {})),
        received_by_agency=_nonzero(within.get(counts.RECEIVED_AGENCY, {})),
        peak_month=peak_month(by_month, totals.top_substance),
        on_the_spot_locations=totals.places,
        registered=totals.total(within, counts.REGISTERED),
        handled=handled,
        carried_over=sum(carried.values()),
        carried_over_by_year=carried,
        closed=closed,
        closed_by_stage=stages,
        closed_by_reason=_nonzero(within.get(counts.CLOSED_REASON, {})),
        examination=ExaminationOut(handled=sum(examined.values()),
                                   handled_by_received_year=examined,
                                   closed=examination_closed),
        closure_rate=rate(closed, handled),
        targets=TargetsOut(
            closures=figure(targets.get("closures"), closed),
            examination_closures=figure(targets.get("examination_closures"),
                                        examination_closed),
        ),
        backlog_at_end=_difference(through.get(counts.STATUS_IN, {}),
                                   through.get(counts.STATUS_OUT, {})),
        liaison={agency: LiaisonFigures(
            requests=requests, responses=responses.get(agency, (0, 0.0))[0],
            median_response_hours=(round(responses[agency][1], 2)
                                   if agency in responses else None),
            overdue_at_end=overdue.get(agency, 0))
            for agency, requests in _nonzero(
                within.get(counts.CLARIFICATION_REQUESTED, {})).items()},
        median_days_to_close={
            stage: round(median, 2) for stage, (_, median)
            in sorted(medians.get(histograms.DAYS_TO_CLOSE, {}).items())},
    )


# The most rows one monthly answer may have (months x groups): 50 years by 166 agencies, or
# 10 years by 833. Beyond it the request is refused (422) before any row is built.
MAX_MONTHLY_ROWS = 100_000
MONTHLY_COLUMNS = ("month", "group", "contacts", "received", "registered", "closed")
MonthlyValues = tuple[str, str, int, int, int, int]


async def monthly(session: AsyncSession, period: Period, zone: ZoneInfo,
                  group_by: str) -> Iterator[MonthlyValues]:
    """Rows in ``MONTHLY_COLUMNS`` order: every month for every group, produced lazily."""
    start, end = period.bounds(zone)
    params = {"s": start, "e": end, "tz": zone.key}
    months = period.months()
    if group_by != "none":
        groups_count = await repository.monthly_group_count(session, params, group_by)
        if len(months) * groups_count > MAX_MONTHLY_ROWS:
            raise invalid("/query/group_by", (
                f"{len(months)} months by {groups_count} groups of {group_by} would be "
                f"{len(months) * groups_count} rows; at most {MAX_MONTHLY_ROWS} are answered: "
                "choose a shorter range or another group_by"))
    rows = await repository.monthly(session, params, group_by)
    found = {(r.month, r.grp): (r.contacts, r.received, r.registered, r.closed) for r in rows}
    groups = sorted({r.grp for r in rows}) if group_by != "none" else [""]

    def produce() -> Iterator[MonthlyValues]:
        for group in groups:
            for month in months:
                yield (month, group, *found.get((month, group), (0, 0, 0, 0)))

    return produce()
