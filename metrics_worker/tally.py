"""The aggregate tables of a rebuild, counted while the log is folded (``metrics_worker.replay``).

The live projection adds each event's increments to ``metrics.daily_counts`` and
``metrics.period_counts`` (``metrics_worker.counts``) and its durations to
``metrics.duration_histograms`` (``metrics_worker.histograms``), the local day computed by
PostgreSQL. A rebuild has the whole log in hand: it counts the same increments in memory, by
local day, as the fold applies each event, and writes each table once with ``COPY``. Grouping
the log's increments in SQL after the facts were written (``metrics_worker.aggregates``, which
still states each measure over the fact tables) was most of a rebuild's writing time; here the
day is computed once per event and the counts stay a few tens of thousands of rows.

``tests/metrics_worker/test_replay.py`` compares the tables with the live projection's and with
``aggregates``' statements over the rebuilt facts, in a time zone with daylight saving time too.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, tzinfo
from operator import itemgetter
from typing import Any

from metrics_worker.counts import CLOSED_BY, CONTACTS_BY, GROUPINGS, REGISTERED_BY
from metrics_worker.histograms import HOURS_PER_BUCKET

TABLES = ("daily_counts", "period_counts", "duration_histograms")  # what a rebuild counts here
# The families of ``Tally.grouped``: the measures their grouping columns are counted in, in
# order (a contact by channel, substance and agency; a step by kind, channel, substance and
# agency of its case).
CONTACT, REGISTER, CLOSE = "contact", "register", "close"
_FIRST = itemgetter(0)
GROUPED = {CONTACT: tuple(CONTACTS_BY[g] for g in GROUPINGS[1:]),
           REGISTER: tuple(REGISTERED_BY[g] for g in GROUPINGS),
           CLOSE: tuple(CLOSED_BY[g] for g in GROUPINGS)}
DAILY_COLUMNS = ["day", "measure", "key", "n"]
PERIOD_COLUMNS = ["grain", "start", "measure", "key", "n"]
HISTOGRAM_COLUMNS = ["grain", "start", "measure", "key", "bucket", "n", "sub_counts"]


@functools.cache  # a history has a few thousand days, each met many times
def _starts(day: date) -> tuple[tuple[str, date], ...]:
    """The day, month and year a local day falls in, each as (grain, first day)."""
    return ("d", day), ("m", day.replace(day=1)), ("y", day.replace(month=1, day=1))


class Tally:
    """Counts by local day, for the office's time zone ``zone``."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        # The counts of each (measure, key) by local day, counted as the fold goes: a few
        # hundred small dicts stay in the processor's caches, where one dict of every (day,
        # measure, key), tens of thousands, made each increment a series of cache misses.
        self.counts: dict[tuple[str, str], dict[date, int]] = {}
        self.samples: dict[tuple[date, str, str, int], int] = {}
        # The monthly figures' counts by group (``counts.CONTACTS_BY`` and the others): each
        # contact or step noted once, ``(day, *its grouping columns)`` in its family's list,
        # and counted into its three or four measures in bulk (``settle``) where the fold
        # would have made three or four increments.
        self.grouped: dict[str, list[tuple[Any, ...]]] = {family: [] for family in GROUPED}

    def day(self, at: datetime) -> date:
        """The local day of ``at`` (``(at AT TIME ZONE zone)::date``)."""
        return at.astimezone(self.zone).date()

    def year(self, at: datetime) -> str:
        """The local year of ``at``, as the counts key it (``consumer.received_year``)."""
        return str(at.astimezone(self.zone).year)

    def add(self, day: date, measure: str, key: str) -> None:
        """One more of ``measure`` for ``key`` on ``day``."""
        by_day = self.counts.get((measure, key))
        if by_day is None:
            by_day = self.counts[measure, key] = {}
        by_day[day] = by_day.get(day, 0) + 1

    def remove(self, day: date, measure: str, key: str) -> None:
        """One less of ``measure`` for ``key`` on ``day`` (a count moved to another key); a
        count taken down to 0 keeps its row, as the live projection's does."""
        by_day = self.counts.setdefault((measure, key), {})
        by_day[day] = by_day.get(day, 0) - 1

    def sample(self, at: datetime, measure: str, key: str, hours: int) -> None:
        """A duration of ``hours`` whole hours, counted on the local day of ``at``."""
        samples = self.samples
        sampled = (self.day(at), measure, key, hours)
        samples[sampled] = samples.get(sampled, 0) + 1

    def settle(self, at_least: int = 0) -> None:
        """Counts what ``grouped`` noted into the measures' counts, when a family's list holds
        at least ``at_least`` (so that memory stays bounded while the fold goes on)."""
        counts = self.counts
        for family, measures in GROUPED.items():
            noted = self.grouped[family]
            if not noted or len(noted) < at_least:
                continue
            days = list(map(_FIRST, noted))
            for position, measure in enumerate(measures, start=1):
                # Counted in C: pairs of (value, day) from C iterators.
                tallied = Counter(zip(map(itemgetter(position), noted), days, strict=True))
                for (value, day), n in tallied.items():
                    by_day = counts.get((measure, value))
                    if by_day is None:
                        by_day = counts[measure, value] = {}
                    by_day[day] = by_day.get(day, 0) + n
            noted.clear()

    def daily_rows(self) -> Iterator[tuple[Any, ...]]:
        """``metrics.daily_counts`` (DAILY_COLUMNS)."""
        self.settle()
        for (measure, key), by_day in self.counts.items():
            for day, n in by_day.items():
                yield day, measure, key, n

    def period_rows(self) -> list[tuple[Any, ...]]:
        """``metrics.period_counts`` (PERIOD_COLUMNS): the daily counts summed by month and
        by year."""
        self.settle()
        months: dict[tuple[date, str, str], int] = {}
        for (measure, key), by_day in self.counts.items():
            for day, n in by_day.items():
                month = (_starts(day)[1][1], measure, key)
                months[month] = months.get(month, 0) + n
        years: dict[tuple[date, str, str], int] = {}
        for (start, measure, key), n in months.items():
            year = (start.replace(month=1), measure, key)
            years[year] = years.get(year, 0) + n
        return [*(("m", *month, n) for month, n in months.items()),
                *(("y", *year, n) for year, n in years.items())]

    def histogram_rows(self) -> list[tuple[Any, ...]]:
        """``metrics.duration_histograms`` (HISTOGRAM_COLUMNS): by day, month and year, each
        bucket (a day of delay) with its counts by hour of the bucket."""
        rows: dict[tuple[str, date, str, str, int], list[int]] = {}
        for (day, measure, key, hours), n in self.samples.items():
            bucket, hour = divmod(hours, HOURS_PER_BUCKET)  # floor, also below zero
            for grain, start in _starts(day):
                row = rows.setdefault((grain, start, measure, key, bucket),
                                      [0] * HOURS_PER_BUCKET)
                row[hour] += n
        return [(*row, sum(sub_counts), sub_counts) for row, sub_counts in rows.items()]

    def histogram_text(self) -> bytes:
        """``histogram_rows`` in ``COPY``'s text format. asyncpg's binary encoder checks every
        element of an array against the ``collections.abc`` classes, which took longer than
        the rest of the rebuild's writing; here each row is one string."""
        return "".join([
            f"{grain}\t{start.isoformat()}\t{_text(measure)}\t{_text(key)}\t{bucket}\t{n}\t"
            f"{{{','.join(map(str, sub_counts))}}}\n"
            for grain, start, measure, key, bucket, n, sub_counts in self.histogram_rows()
        ]).encode()


def _text(value: str | None) -> str:
    """A text value as ``COPY``'s text format spells it."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return value
