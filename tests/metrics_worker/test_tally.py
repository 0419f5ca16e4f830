"""The rebuild's duration histograms, written in ``COPY``'s text format, are stored as counted."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg

from metrics_worker import histograms, tally
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
