"""Assembling the figures of METRICS.md from the read model."""

from __future__ import annotations

from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import repository
from metrics_worker.periods import Period
from metrics_worker.schemas import (
    ExaminationOut,
    LiaisonFigures,
    MonthlyRow,
    PeakMonth,
    PeriodOut,
    Summary,
    TargetFigure,
    TargetsOut,
)
from shared.vocabulary import Kind


def rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _sorted(counter: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in sorted(counter.items()) if v}


def peak_month(by_month: dict[str, int], substances: dict[str, Counter[str]]) -> PeakMonth | None:
    if not any(by_month.values()):
        return None
    month = min(by_month, key=lambda m: (-by_month[m], m))  # most; earliest on a tie
    counts = substances.get(month, Counter())
    top = min(counts, key=lambda s: (-counts[s], s)) if counts else None
    return PeakMonth(month=month, received=by_month[month], top_substance=top)


async def summary(session: AsyncSession, period: Period, zone: ZoneInfo) -> Summary:
    start, end = period.bounds(zone)
    params = {"s": start, "e": end, "tz": zone.key}

    by_kind: Counter[str] = Counter(dict.fromkeys([k.value for k in Kind], 0))
    by_month: dict[str, int] = dict.fromkeys(period.months(), 0)
    by_channel: Counter[str] = Counter()
    by_substance: Counter[str] = Counter()
    by_agency: Counter[str] = Counter()
    substance_by_month: dict[str, Counter[str]] = defaultdict(Counter)
    for row in await repository.contacts_grouped(session, params):
        by_kind[row.kind] += row.n
        if row.kind not in repository.REPORT_KINDS:
            continue
        by_month[row.month] = by_month.get(row.month, 0) + row.n
        by_channel[row.channel] += row.n
        by_substance[row.substance] += row.n
        by_agency[row.agency] += row.n
        substance_by_month[row.month][row.substance] += row.n
    received = sum(by_month.values())

    cases = await repository.case_figures(session, params)
    stages: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    median_days: dict[str, float] = {}
    for row in await repository.closed_by(session, params):
        if row.closure_stage is not None:
            stages[row.closure_stage] += row.n
            median_days[row.closure_stage] = round(float(row.median_days), 2)
        elif row.closure_reason is not None:
            reasons[row.closure_reason] += row.n
    carried = {str(r.year): int(r.n) for r in await repository.carried_over_by_year(session,
                                                                                     params)}
    examined = {str(r.year): int(r.n) for r in await repository.examination_by_year(session,
                                                                                     params)}
    target = await repository.get_target(session, period.label) if period.label else None

    def figure(goal: int | None, actual: int) -> TargetFigure | None:
        return None if goal is None else TargetFigure(target=goal, actual=actual,
                                                      rate=rate(actual, goal))

    return Summary(
        period=PeriodOut(from_=period.first, to=period.last),
        as_of=await repository.as_of(session),
        contacts=sum(by_kind.values()),
        contacts_by_kind={Kind(k): v for k, v in by_kind.items()},
        received=received,
        received_by_month=by_month,
        received_by_channel=_sorted(by_channel),
        received_by_substance=_sorted(by_substance),
        received_by_agency=_sorted(by_agency),
        peak_month=peak_month(by_month, substance_by_month),
        on_the_spot_locations=await repository.on_the_spot_locations(session, params),
        registered=await repository.registered(session, params),
        handled=cases.handled,
        carried_over=sum(carried.values()),
        carried_over_by_year=carried,
        closed=cases.closed,
        closed_by_stage=_sorted(stages),
        closed_by_reason=_sorted(reasons),
        examination=ExaminationOut(handled=sum(examined.values()),
                                   handled_by_received_year=examined,
                                   closed=cases.examination_closed),
        closure_rate=rate(cases.closed, cases.handled),
        targets=TargetsOut(
            closures=figure(target.closures if target else None, cases.closed),
            examination_closures=figure(target.examination_closures if target else None,
                                        cases.examination_closed),
        ),
        backlog_at_end={r.status: int(r.n) for r in sorted(
            await repository.backlog_at_end(session, params), key=lambda r: r.status)},
        liaison={r.agency: LiaisonFigures(
            requests=r.requests, responses=r.responses,
            median_response_hours=(round(float(r.median_hours), 2)
                                   if r.median_hours is not None else None),
            overdue_at_end=r.overdue_at_end) for r in await repository.liaison(session, params)},
        median_days_to_close=median_days,
    )


async def monthly(session: AsyncSession, period: Period, zone: ZoneInfo,
                  group_by: str) -> list[MonthlyRow]:
    start, end = period.bounds(zone)
    rows = await repository.monthly(session, {"s": start, "e": end, "tz": zone.key}, group_by)
    found = {(r.month, r.grp): r for r in rows}
    groups = sorted({r.grp for r in rows}) if group_by != "none" else [""]
    result = []
    for group in groups:
        for month in period.months():
            row = found.get((month, group))
            result.append(MonthlyRow(
                month=month, group=group,
                contacts=row.contacts if row else 0, received=row.received if row else 0,
                registered=row.registered if row else 0, closed=row.closed if row else 0,
            ))
    return result
