"""The rebuild's counts: the duration histograms, written in ``COPY``'s text format, are stored
as counted; grouped and moved counts make one row each; months and years sum their days."""

from __future__ import annotations

import io
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from metrics_worker import counts, histograms, tally
from metrics_worker.tally import Tally
from shared.db import asyncpg_dsn

JAKARTA = ZoneInfo("Asia/Jakarta")


async def test_the_histograms_are_stored_as_counted_whatever_their_keys(
        database_url: str) -> None:
    counted = Tally(JAKARTA)
    keys = ["agency-1", "tab\there", "new\nline", "back\\slash \\N", "carriage\rreturn",
            "Dinas Pekerjaan Umum — Bangka", ""]
    for i, key in enumerate(keys):
        at = datetime(2024, 12, 31, 17 + i % 2, 30, tzinfo=UTC)  # both sides of a local midnight
        counted.sample(at, histograms.RESPONSE_HOURS, key, 5 * i)
        counted.sample(at, histograms.RESPONSE_HOURS, key, -3)  # answered before the request
        counted.sample(at, histograms.DAYS_TO_CLOSE, key, 24 * 400 + i)
    expected = sorted(counted.histogram_rows())
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.copy_to_table(
            "duration_histograms", schema_name="metrics", columns=tally.HISTOGRAM_COLUMNS,
            source=io.BytesIO(counted.histogram_text()), format="text")
        stored = [tuple(row) for row in await connection.fetch(
            f"SELECT {', '.join(tally.HISTOGRAM_COLUMNS)} FROM metrics.duration_histograms")]
    finally:
        await connection.close()
    assert sorted(stored) == expected
    assert {row[3] for row in stored} == set(keys)
    assert {row[0] for row in stored} == {"d", "m", "y"}


def test_grouped_counts_and_moved_counts_give_one_row_per_day_measure_and_key() -> None:
    """What the fold notes by group (counted in bulk by ``settle``) and what ``add`` and
    ``remove`` count one by one (a count moved to another agency) for the same measures
    make one count per (day, measure, key), a count taken to 0 keeping its row; the months
    and years sum the days, across a year's end."""
    counted, one_by_one = Tally(JAKARTA), Tally(JAKARTA)
    draw = random.Random(3)
    days = [date(2024, 12, 29) + timedelta(days=i) for i in range(6)]
    for _ in range(600):
        day = draw.choice(days)
        values = (draw.choice("ab"), draw.choice("cd"), draw.choice(["x", "y"]))
        counted.grouped[tally.CONTACT].append((day, *values))
        for measure, value in zip(tally.GROUPED[tally.CONTACT], values, strict=True):
            one_by_one.add(day, measure, value)
        if draw.random() < 0.05:
            counted.settle(at_least=20)
    for each in (counted, one_by_one):
        each.remove(days[0], counts.CONTACTS_AGENCY, "x")  # moved to an agency not seen
        each.add(days[0], counts.CONTACTS_AGENCY, "z")
        each.remove(days[5], counts.CONTACTS_AGENCY, "w")  # taken to 0: its row is kept
        each.add(days[5], counts.CONTACTS_AGENCY, "w")
        each.add(days[1], counts.OPENED, "2024")
    expected = sorted((day, measure, key, n) for (measure, key), by_day in
                      one_by_one.counts.items() for day, n in by_day.items())
    assert (days[5], counts.CONTACTS_AGENCY, "w", 0) in expected
    assert sorted(counted.daily_rows()) == expected
    periods: Counter[tuple[str, date, str, str]] = Counter()
    for day, measure, key, n in expected:
        periods["m", day.replace(day=1), measure, key] += n
        periods["y", day.replace(month=1, day=1), measure, key] += n
    assert sorted(counted.period_rows()) == sorted((*row, n) for row, n in periods.items())


def test_the_histograms_of_months_and_years_sum_those_of_their_days() -> None:
    counted = Tally(JAKARTA)
    draw = random.Random(5)
    expected: dict[tuple[str, date, str, str, int], list[int]] = {}
    for _ in range(400):
        at = datetime(2023, 12, 1, tzinfo=UTC) + timedelta(hours=draw.randrange(24 * 70))
        key, hours = draw.choice(["p", "q"]), draw.randrange(-30, 24 * 5)
        counted.sample(at, histograms.RESPONSE_HOURS, key, hours)
        day = counted.day(at)
        for grain, start in (("d", day), ("m", day.replace(day=1)),
                             ("y", day.replace(month=1, day=1))):
            row = expected.setdefault((grain, start, histograms.RESPONSE_HOURS, key,
                                       hours // 24), [0] * 24)
            row[hours % 24] += 1
    assert sorted(counted.histogram_rows()) == sorted(
        (*row, sum(sub_counts), sub_counts) for row, sub_counts in expected.items())
    assert {row[0] for row in expected} == {"d", "m", "y"}
    assert {row[1].year for row in expected if row[0] == "y"} == {2023, 2024}
