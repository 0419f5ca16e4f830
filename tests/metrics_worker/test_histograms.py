"""Figures from the pre-aggregated structures equal the direct definitions over the case rows.

Many cases are projected straight through the metrics handlers (the same code the consumer
runs), with durations spread over years, then every figure built from histograms and indexes is
compared with the SQL that applies METRICS.md literally, over periods of every shape.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from metrics_worker import consumer, counts, histograms, service
from metrics_worker.calendar import spans
from metrics_worker.periods import Period
from shared.db import Database
from tests.support import BackingServices

ZONE = "Asia/Jakarta"
START = datetime(2020, 11, 20, tzinfo=UTC)
PERIODS = [
    Period(date(2021, 1, 1), date(2021, 12, 31), "2021"),
    Period(date(2022, 1, 1), date(2022, 3, 31), "2022-Q1"),
    Period(date(2022, 6, 1), date(2022, 6, 30), "2022-06"),
    Period(date(2021, 3, 17), date(2023, 2, 9), None),
    Period(date(2020, 1, 1), date(2023, 12, 31), None),
    Period(date(2022, 12, 31), date(2023, 1, 1), None),
    Period(date(2021, 7, 4), date(2021, 7, 4), None),
]
DIRECT_DAYS = """
    SELECT closure_stage, percentile_cont(0.5) WITHIN GROUP (
             ORDER BY extract(epoch FROM closed_at - received_at) / 86400.0) AS median
    FROM metrics.cases
    WHERE closed_at >= :s AND closed_at < :e AND closure_stage IS NOT NULL GROUP BY 1"""
DIRECT_HOURS = """
    SELECT r.agency, count(*) AS responses, percentile_cont(0.5) WITHIN GROUP (
             ORDER BY extract(epoch FROM r.at - q.at) / 3600.0) AS median
    FROM metrics.transitions r
    JOIN metrics.transitions q ON q.case_id = r.case_id AND q.version = r.version - 1
                              AND q.action = 'request_clarification'
    WHERE r.action = 'respond' AND r.at >= :s AND r.at < :e GROUP BY 1"""
DIRECT_PLACES = """
    SELECT count(DISTINCT place) FROM metrics.contacts
    WHERE channel = 'on_the_spot' AND place IS NOT NULL AND received_at >= :s AND received_at < :e
"""

# Per agency asked for clarification in the period: requests, and those awaiting the agency
# past due at the end (no next step before it).
DIRECT_LIAISON = """
    WITH asked AS (
      SELECT agency, count(*) AS requests FROM metrics.transitions
      WHERE action = 'request_clarification' AND at >= :s AND at < :e GROUP BY agency)
    SELECT a.agency, a.requests, (
      SELECT count(*) FROM metrics.transitions q
      WHERE q.action = 'request_clarification' AND q.agency = a.agency
        AND q.at < :e AND q.due_at < :e
        AND NOT EXISTS (SELECT 1 FROM metrics.transitions n
                        WHERE n.case_id = q.case_id AND n.version = q.version + 1
                          AND n.at < :e)) AS overdue_at_end
    FROM asked a"""
DIRECT_CASES = """
    SELECT count(*) FILTER (WHERE received_at < :e
                              AND (closed_at IS NULL OR closed_at >= :s)) AS handled,
           count(*) FILTER (WHERE closed_at >= :s AND closed_at < :e) AS closed,
           count(*) FILTER (WHERE received_at >= :s AND received_at < :e) AS received
    FROM metrics.cases"""


def _moment(rng: random.Random, after: datetime, days: float) -> datetime:
    return after + timedelta(seconds=rng.randrange(1, int(days * 86400)))


async def _project(database: Database, rng: random.Random, cases: int) -> None:
    agencies = ["pln", "bpn", "polres"]
    async with database.transaction() as session:
        for n in range(cases):
            case_id = str(uuid.uuid4())
            received = _moment(rng, START, 3 * 365)
            agency = rng.choice(agencies)
            channel = "on_the_spot" if n % 3 == 0 else "walk_in"
            await consumer.record_contact(session, {
                "id": case_id, "kind": "report", "channel": channel, "substance": "land",
                "reported_agency": {"code": agency},
                "location": {"place": f" Pos {rng.randrange(40)} "} if channel == "on_the_spot"
                else None,
                "received_at": received.isoformat()})
            await consumer.record_opened(session, {
                "case_id": case_id, "kind": "report", "channel": channel, "substance": "land",
                "agency": agency, "received_at": received.isoformat(), "status": "received",
                "version": 1}, ZONE)
            steps: list[tuple[str, str, str, dict[str, Any]]] = [
                ("register", "received", "registered", {})]
            if n % 2:
                steps += [("start_examination", "registered", "in_examination", {}),
                          ("request_clarification", "in_examination", "awaiting_agency",
                           {"due_at": (received + timedelta(days=20)).isoformat()})]
                if n % 5:
                    steps.append(("respond", "awaiting_agency", "agency_responded", {}))
            if n % 7:
                stage = "examination" if n % 2 else "verification"
                steps.append(("close", steps[-1][2], "closed",
                              {"closure_stage": stage, "reason": "resolved"}))
            at = received
            for version, (action, source, target, extra) in enumerate(steps, start=2):
                at = _moment(rng, at, rng.choice([0.2, 3, 40, 300]))
                await consumer.record_transition(session, {
                    "case_id": case_id, "version": version, "action": action,
                    "from_status": source, "to_status": target, "at": at.isoformat(),
                    "agency": agency, **extra}, ZONE)


async def test_pre_aggregated_figures_equal_the_direct_definitions(
        services: BackingServices, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=histograms.__name__)
    async with Database.opened(services.database_url) as database:
        await _project(database, random.Random(9), cases=240)
        compared = with_overdue = 0
        async with database.transaction() as session:
            for period in PERIODS:
                start, end = period.bounds(services.settings().zone)
                bounds = {"s": start, "e": end}
                summary = await service.summary(session, period, services.settings().zone)
                days = {r.closure_stage: round(float(r.median), 2)
                        for r in await session.execute(text(DIRECT_DAYS), bounds)}
                hours = {r.agency: (r.responses, round(float(r.median), 2))
                         for r in await session.execute(text(DIRECT_HOURS), bounds)}
                places = (await session.execute(text(DIRECT_PLACES), bounds)).scalar_one()
                liaison = {r.agency: (r.requests, r.overdue_at_end)
                           for r in await session.execute(text(DIRECT_LIAISON), bounds)}
                cases = (await session.execute(text(DIRECT_CASES), bounds)).one()

                assert summary.median_days_to_close == days, period
                # Agencies asked in the period are listed, with every response of the period.
                assert {agency: (figures.responses, figures.median_response_hours)
                        for agency, figures in summary.liaison.items()
                        if figures.responses} == {
                    agency: figures for agency, figures in hours.items()
                    if agency in summary.liaison}, period
                assert summary.on_the_spot_locations == places, period
                assert {agency: (figures.requests, figures.overdue_at_end)
                        for agency, figures in summary.liaison.items()} == liaison, period
                assert (summary.handled, summary.closed, summary.received) == tuple(cases), period
                compared += bool(days) and bool(hours) and bool(places)
                with_overdue += any(overdue for _, overdue in liaison.values())
        assert compared >= len(PERIODS) - 2, "too few periods had anything to compare"
        assert not caplog.records, "a median was computed the slow way"
        assert with_overdue >= 3, "too few periods ended with overdue requests"


async def test_a_damaged_histogram_is_worked_around_with_the_same_figures(
        services: BackingServices, caplog: pytest.LogCaptureFixture) -> None:
    """Histogram rows that promise durations the case rows do not have (a read model damaged
    by hand): the medians of those keys are computed from the rows instead, and come out as
    before the damage."""
    period = PERIODS[4]  # four years: every key
    zone = services.settings().zone
    async with Database.opened(services.database_url) as database:
        await _project(database, random.Random(5), cases=120)
        async with database.transaction() as session:
            before = await service.summary(session, period, zone)
            # A thousand phantom durations in the last hour of each key's longest bucket: the
            # middle of every histogram falls among them, where no row is found.
            await session.execute(text("""
                UPDATE metrics.duration_histograms h
                SET n = n + 1000, sub_counts[24] = sub_counts[24] + 1000
                WHERE bucket = (SELECT max(bucket) FROM metrics.duration_histograms l
                                WHERE l.measure = h.measure AND l.key = h.key)"""))
        caplog.set_level(logging.WARNING, logger=histograms.__name__)
        async with database.transaction() as session:
            after = await service.summary(session, period, zone)
    assert before.median_days_to_close
    assert any(figures.median_response_hours is not None
               for figures in before.liaison.values())
    assert after == before
    worked_around = {record.getMessage().split(" histogram")[0] for record in caplog.records}
    assert worked_around == {histograms.DAYS_TO_CLOSE, histograms.RESPONSE_HOURS}


@given(st.dates(date(1995, 1, 1), date(2030, 12, 31)), st.integers(-3, 4000))
def test_spans_cover_each_day_of_a_range_once(first: date, length: int) -> None:
    last = first + timedelta(days=length)
    covered: list[date] = []
    for span in spans(first, last):
        day = span.first
        end = {"d": span.last, "m": _month_end(span.last),
               "y": date(span.last.year, 12, 31)}[span.grain]
        while day <= end:
            covered.append(day)
            day += timedelta(days=1)
    assert covered == [first + timedelta(days=n) for n in range(length + 1)]
    assert len(spans(first, last)) <= 5


def _month_end(day: date) -> date:
    following = date(day.year + 1, 1, 1) if day.month == 12 else \
        date(day.year, day.month + 1, 1)
    return following - timedelta(days=1)


async def test_place_and_liaison_counts_are_what_the_fact_rows_imply(
        services: BackingServices) -> None:
    """The projection's per-day rows of the new measures equal the set-based derivation the
    rebuild (and the migration that introduced them) use."""
    async with Database.opened(services.database_url) as database:
        await _project(database, random.Random(4), cases=60)
        async with database.transaction() as session:
            measures = [counts.ON_THE_SPOT_PLACE, counts.CLARIFICATION_REQUESTED,
                        counts.OVERDUE_FROM, counts.OVERDUE_ENDED]
            projected = set(await session.execute(text(
                "SELECT day, measure, key, n FROM metrics.daily_counts "
                "WHERE measure = ANY(:measures)"), {"measures": measures}))
            derived = set(await session.execute(text(f"""
                SELECT (i.at AT TIME ZONE metrics.office_timezone())::date, i.measure, i.key,
                       count(*)
                FROM ({counts.PLACE_AND_LIAISON_INCREMENTS}) i GROUP BY 1, 2, 3""")))
            by_month = set(await session.execute(text(
                "SELECT start, measure, key, n FROM metrics.period_counts "
                "WHERE grain = 'm' AND measure = ANY(:measures)"), {"measures": measures}))
        assert {m for _, m, _, _ in projected} == set(measures)
        assert projected == derived
        months: dict[tuple[date, str, str], int] = {}
        for day, measure, key, n in projected:
            month = (day.replace(day=1), measure, key)
            months[month] = months.get(month, 0) + n
        assert by_month == {(*month, n) for month, n in months.items()}
