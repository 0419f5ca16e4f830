"""Migration ``20261129_hour_histograms`` on a database holding data.

A read model as the previous revision kept it (closures and liaison responses with durations
to the second, histograms by whole day to close and half day to respond) is upgraded: the
histograms must then be exactly what the projection's own derivation gives (the set-based
rebuild's), and every median read through them must equal ``percentile_cont`` over the rows,
without the slow fallback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from metrics_worker import aggregates, figures, histograms
from metrics_worker.periods import Period
from services.migrate import alembic_config
from shared.db import Database, on_driver
from shared.settings import Settings

PREVIOUS = "20261129_response_half_days"
START = datetime(2021, 1, 1, tzinfo=UTC)
AGENCIES = ("pln", "bpn", "polres")
PERIODS = [Period(date(2021, 1, 1), date(2021, 12, 31), "2021"),
           Period(date(2022, 1, 1), date(2022, 3, 31), "2022-Q1"),
           Period(date(2021, 5, 17), date(2022, 11, 3), None),
           Period(date(2020, 1, 1), date(2023, 12, 31), None)]
# How the previous revision's projection counted them.
PREVIOUS_HISTOGRAMS = """
    INSERT INTO metrics.duration_histograms (grain, start, measure, key, bucket, n)
    SELECT g.grain, date_trunc(g.unit, (s.at AT TIME ZONE 'Asia/Jakarta')::date)::date,
           s.measure, s.key, s.bucket, count(*)
    FROM (SELECT closed_at AS at, 'days_to_close' AS measure, closure_stage AS key,
                 closed_after_days AS bucket FROM metrics.cases WHERE closure_stage IS NOT NULL
          UNION ALL
          SELECT at, 'response_hours', agency, floor(answered_after_hours / 12.0)::integer
          FROM metrics.transitions WHERE answered_after_hours IS NOT NULL) s
    CROSS JOIN (VALUES ('d', 'day'), ('m', 'month'), ('y', 'year')) AS g (grain, unit)
    GROUP BY 1, 2, 3, 4, 5"""
DIRECT = {
    histograms.DAYS_TO_CLOSE: """
        SELECT closure_stage, count(*), percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM closed_at - received_at) / 86400.0)
        FROM metrics.cases
        WHERE closure_stage IS NOT NULL AND closed_at >= :s AND closed_at < :e GROUP BY 1""",
    histograms.RESPONSE_HOURS: """
        SELECT agency, count(*), percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM at - asked_at) / 3600.0)
        FROM metrics.transitions
        WHERE answered_after_hours IS NOT NULL AND at >= :s AND at < :e GROUP BY 1""",
}


def _facts(rng: random.Random, cases: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Cases closed after durations to the second (some to the whole day, as a tie), half of
    them after a clarification request the agency answered."""
    case_rows, steps = [], []
    for n in range(cases):
        case_id = uuid.uuid4()
        agency = AGENCIES[n % len(AGENCIES)]
        received = START + timedelta(seconds=rng.randrange(3 * 365 * 86400))
        at = received + timedelta(days=2)
        step: dict[str, Any] = {"case_id": case_id, "agency": agency, "reason": None,
                                "closure_stage": None, "answered_after_hours": None,
                                "asked_at": None}
        steps.append({**step, "version": 2, "action": "register", "from_status": "received",
                      "to_status": "registered", "at": at})
        status, version = "registered", 2
        if n % 2:
            asked = at + timedelta(seconds=rng.randrange(1, 30 * 86400))
            answered = asked + timedelta(seconds=rng.choice(
                [rng.randrange(1, 90 * 3600), 36 * 3600]))
            steps += [{**step, "version": 3, "action": "request_clarification",
                       "from_status": "registered", "to_status": "awaiting_agency",
                       "at": asked},
                      {**step, "version": 4, "action": "respond",
                       "from_status": "awaiting_agency", "to_status": "agency_responded",
                       "at": answered, "asked_at": asked,
                       "answered_after_hours": (answered - asked) // timedelta(hours=1)}]
            status, version, at = "agency_responded", 4, answered
        closed_at = None
        stage = "examination" if n % 2 else "verification"
        if n % 5:
            closed_at = received + (timedelta(days=rng.randrange(3, 200)) if n % 7 == 0 else
                                    timedelta(seconds=rng.randrange(3 * 86400, 200 * 86400)))
            closed_at = max(closed_at, at + timedelta(seconds=1))
            steps.append({**step, "version": version + 1, "action": "close",
                          "from_status": status, "to_status": "closed", "at": closed_at,
                          "reason": "resolved", "closure_stage": stage})
            status, version = "closed", version + 1
        case_rows.append({
            "case_id": case_id, "agency": agency, "received_at": received, "status": status,
            "version": version, "closed_at": closed_at,
            "closure_stage": stage if closed_at else None,
            "closed_after_days": (closed_at - received) // timedelta(days=1) if closed_at
            else None})
    return case_rows, steps


async def _histograms(database: Database) -> list[tuple[Any, ...]]:
    async with database.transaction() as session:
        return [tuple(r) for r in await session.execute(text(
            "SELECT * FROM metrics.duration_histograms ORDER BY 1, 2, 3, 4, 5"))]


async def test_upgrade_counts_the_histograms_by_hour(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, PREVIOUS)
    case_rows, steps = _facts(random.Random(7), cases=400)
    async with Database.opened(database_url) as database, database.transaction() as session:
        await session.execute(text("""
                INSERT INTO metrics.cases (case_id, kind, channel, substance, agency,
                                           received_at, opened_status, status, version,
                                           closed_at, closure_stage, closed_after_days)
                VALUES (:case_id, 'report', 'walk_in', 'land', :agency, :received_at,
                        'received', :status, :version, :closed_at, :closure_stage,
                        :closed_after_days)"""), case_rows)
        await session.execute(text("""
                INSERT INTO metrics.transitions (case_id, version, action, from_status,
                                                 to_status, at, agency, reason, closure_stage,
                                                 answered_after_hours, asked_at)
                VALUES (:case_id, :version, :action, :from_status, :to_status, :at, :agency,
                        :reason, :closure_stage, :answered_after_hours, :asked_at)"""), steps)
        await session.execute(text(PREVIOUS_HISTOGRAMS))

    await asyncio.to_thread(command.upgrade, config, "head")

    async with Database.opened(database_url) as database:
        upgraded = await _histograms(database)
        async with database.transaction() as session:
            await session.execute(text("DELETE FROM metrics.duration_histograms"))
            await session.execute(text(aggregates.DURATION_HISTOGRAMS))
        assert upgraded == await _histograms(database)
        assert all(sum(row[-1]) == row[-2] for row in upgraded)

        caplog.set_level(logging.WARNING, logger=histograms.__name__)
        compared = 0
        async with database.transaction() as session, on_driver(session) as connection:
            for period in PERIODS:
                start, end = period.bounds(Settings().zone)
                found = await figures.read(connection, period, start, end)
                medians = await found.middles.medians(connection, start, end)
                for measure, sql in DIRECT.items():
                    direct = {key: (n, round(median, 9)) for key, n, median
                              in await session.execute(text(sql), {"s": start, "e": end})}
                    assert {key: (n, round(median, 9)) for key, (n, median)
                            in medians[measure].items()} == direct, (period, measure)
                    compared += len(direct)
        assert compared >= 16
        assert not caplog.records, "a median was computed the slow way"
