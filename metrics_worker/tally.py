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
import operator
from collections import Counter
from collections.abc import Callable, Iterator
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
def _month(day: date) -> date:
    """The first day of the month of ``day``."""
    return day.replace(day=1)


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
        # What ``settle`` counted: per grouped measure, the count of each (key, day), counted
        # by ``Counter.update`` in C (a Python loop merging them by (measure, key) took longer
        # than the counting).
        self.by_group: dict[str, Counter[tuple[str, date]]] = {
            measure: Counter() for measures in GROUPED.values() for measure in measures}

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
        """Counts what ``grouped`` noted into ``by_group``, when a family's list holds at
        least ``at_least`` (so that memory stays bounded while the fold goes on)."""
        for family, measures in GROUPED.items():
            noted = self.grouped[family]
            if not noted or len(noted) < at_least:
                continue
            days = list(map(_FIRST, noted))
            for position, measure in enumerate(measures, start=1):
                # Counted in C: pairs of (value, day) from C iterators.
                self.by_group[measure].update(zip(map(itemgetter(position), noted), days,
                                                  strict=True))
            noted.clear()

    def _gathered(self) -> None:
        """Everything counted, the grouped measures' in ``by_group``: those ``add`` and
        ``remove`` counted (a count moved to another agency) are moved there, so each (day,
        measure, key) is one count, and a row whatever its count (0 too), as before."""
        self.settle()
        counts, by_group = self.counts, self.by_group
        for measure, key in [mk for mk in counts if mk[0] in by_group]:
            counted = by_group[measure]
            for day, n in counts.pop((measure, key)).items():
                counted[key, day] = counted.get((key, day), 0) + n

    def daily_rows(self) -> Iterator[tuple[Any, ...]]:
        """``metrics.daily_counts`` (DAILY_COLUMNS)."""
        self._gathered()
        for (measure, key), by_day in self.counts.items():
            for day, n in by_day.items():
                yield day, measure, key, n
        for measure, counted in self.by_group.items():
            for (key, day), n in counted.items():
                yield day, measure, key, n

    def period_rows(self) -> list[tuple[Any, ...]]:
        """``metrics.period_counts`` (PERIOD_COLUMNS): the daily counts summed by month and
        by year."""
        month = _month
        # (measure, key, month) counts: summed from the days, the years from the months.
        months: dict[tuple[str, str, date], int] = {}
        for day, measure, key, n in self.daily_rows():
            counted = (measure, key, month(day))
            months[counted] = months.get(counted, 0) + n
        years: dict[tuple[str, str, date], int] = {}
        for (measure, key, first), n in months.items():
            counted = (measure, key, first.replace(month=1))
            years[counted] = years.get(counted, 0) + n
        return [*(("m", first, measure, key, n) for (measure, key, first), n in months.items()),
                *(("y", first, measure, key, n) for (measure, key, first), n in years.items())]

    def histogram_rows(self) -> list[tuple[Any, ...]]:
        """``metrics.duration_histograms`` (HISTOGRAM_COLUMNS): by day, month and year, each
        bucket (a day of delay) with its counts by hour of the bucket."""
        days: dict[tuple[date, str, str, int], list[int]] = {}
        for (day, measure, key, hours), n in self.samples.items():
            bucket, hour = divmod(hours, HOURS_PER_BUCKET)  # floor, also below zero
            row = days.get((day, measure, key, bucket))
            if row is None:
                row = days[day, measure, key, bucket] = [0] * HOURS_PER_BUCKET
            row[hour] += n
        # Months summed from the days, years from the months: hour by hour, in C.
        months = _rolled_up(days, lambda day: day.replace(day=1))
        years = _rolled_up(months, lambda month: month.replace(month=1))
        return [(grain, *row, sum(sub_counts), sub_counts)
                for grain, rows in (("d", days), ("m", months), ("y", years))
                for row, sub_counts in rows.items()]

    def histogram_text(self) -> bytes:
        """``histogram_rows`` in ``COPY``'s text format. asyncpg's binary encoder checks every
        element of an array against the ``collections.abc`` classes, which took longer than
        the rest of the rebuild's writing; here each row is one string. A day's row mostly
        holds one or two durations: their hours' text is made once for all such rows."""
        spelt: dict[Any, str] = {}

        def text(value: Any) -> str:
            found = spelt.get(value)
            if found is None:
                found = spelt[value] = _text(value) if type(value) is str else (
                    value.isoformat() if isinstance(value, date) else
                    f"{{{','.join(map(str, value))}}}")
            return found

        return "".join([
            f"{grain}\t{text(start)}\t{text(measure)}\t{text(key)}\t{bucket}\t{n}\t"
            f"{text(tuple(sub_counts))}\n"
            for grain, start, measure, key, bucket, n, sub_counts in self.histogram_rows()
        ]).encode()


def _rolled_up(rows: dict[tuple[date, str, str, int], list[int]],
               start: Callable[[date], date]) -> dict[tuple[date, str, str, int], list[int]]:
    """Histogram rows summed into those of the grain that starts on ``start(their start)``."""
    starts: dict[date, date] = {}
    summed: dict[tuple[date, str, str, int], list[int]] = {}
    for (first, measure, key, bucket), sub_counts in rows.items():
        begins = starts.get(first)
        if begins is None:
            begins = starts[first] = start(first)
        row = summed.get((begins, measure, key, bucket))
        summed[begins, measure, key, bucket] = sub_counts.copy() if row is None else list(
            map(operator.add, row, sub_counts))
    return summed


def _text(value: str | None) -> str:
    """A text value as ``COPY``'s text format spells it."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return value
