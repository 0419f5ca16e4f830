"""Cutting a range of local days into whole years, whole months and loose days.

The read model keeps its counts and histograms per day, per month and per year, so a period of
any length is a sum of a bounded number of rows: at most two runs of loose days (the ragged
ends), two runs of months and one run of years.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Grain = Literal["d", "m", "y"]
# Before the first record the office can hold (METRICS' periods start in 1990); a Jan 1st.
BEGINNING = date(1900, 1, 1)


@dataclass(frozen=True)
class Span:
    """Rows of ``grain`` whose start lies in ``[first, last]``."""

    grain: Grain
    first: date
    last: date


def _month_last(day: date) -> date:
    following = date(day.year + 1, 1, 1) if day.month == 12 else \
        date(day.year, day.month + 1, 1)
    return following - timedelta(days=1)


def spans(first: date, last: date) -> list[Span]:
    """``[first, last]`` as whole years, whole months and days; [] when it is empty."""
    result: list[Span] = []
    day = first
    while day <= last:
        if day.month == 1 and day.day == 1 and date(day.year, 12, 31) <= last:
            final = last.year if last == date(last.year, 12, 31) else last.year - 1
            result.append(Span("y", day, date(final, 1, 1)))
            day = date(final + 1, 1, 1)
        elif day.day == 1 and _month_last(day) <= last:
            month = day
            while month.month < 12 and _month_last(month + timedelta(days=31)) <= last:
                month = (month + timedelta(days=31)).replace(day=1)
            result.append(Span("m", day, month))
            day = _month_last(month) + timedelta(days=1)
        else:
            end = min(_month_last(day), last)
            result.append(Span("d", day, end))
            day = end + timedelta(days=1)
    return result


def until(day: date) -> list[Span]:
    """Every day before ``day``."""
    return spans(BEGINNING, day - timedelta(days=1))


def day_sql(day: date) -> str:
    """``day`` as an SQL literal: the summary's statement carries its bounds as constants, so
    the plan PostgreSQL keeps for a prepared statement is made for them."""
    return f"DATE '{day.isoformat()}'"
