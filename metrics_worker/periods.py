"""Reporting periods in the office's time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.problems import invalid

# ASCII digits, matched whole (``fullmatch``): ``\d`` would take Arabic-Indic digits and ``$``
# a final "\n", each a second spelling of one period (and so a second target for one quarter).
PERIOD = re.compile(r"^([0-9]{4})(?:-(Q[1-4]|0[1-9]|1[0-2]))?$")
MIN_YEAR, MAX_YEAR = 1990, 2200


@dataclass(frozen=True)
class Period:
    first: date
    last: date
    label: str | None  # "2022-Q1", "2022-03", "2022" when the range is exactly one of those

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) in UTC: 00:00 of ``first`` to 24:00 of ``last``, local time."""
        start = datetime.combine(self.first, time(), zone).astimezone(UTC)
        end = datetime.combine(self.last + timedelta(days=1), time(), zone).astimezone(UTC)
        return start, end

    def months(self) -> list[str]:
        result = []
        year, month = self.first.year, self.first.month
        while (year, month) <= (self.last.year, self.last.month):
            result.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return result


def _month_end(year: int, month: int) -> date:
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return following - timedelta(days=1)


def parse_period(text: str, field: str = "/query/period") -> Period:
    """The period ``text`` names; 422 naming ``field`` (where the client sent it) if none."""
    match = PERIOD.fullmatch(text)
    if not match or not MIN_YEAR <= int(match.group(1)) <= MAX_YEAR:
        raise invalid(field, "period must be YYYY, YYYY-Qn or YYYY-MM")
    year, part = int(match.group(1)), match.group(2)
    if part is None:
        return Period(date(year, 1, 1), date(year, 12, 31), text)
    if part.startswith("Q"):
        quarter = int(part[1])
        first_month = 3 * quarter - 2
        return Period(date(year, first_month, 1), _month_end(year, first_month + 2), text)
    month = int(part)
    return Period(date(year, month, 1), _month_end(year, month), text)


def label_of(first: date, last: date) -> str | None:
    if first.day != 1 or last != _month_end(last.year, last.month):
        return None
    if first.year != last.year:
        return None
    if first.month == last.month:
        return f"{first.year:04d}-{first.month:02d}"
    if first.month == 1 and last.month == 12:
        return f"{first.year:04d}"
    if (first.month - 1) % 3 == 0 and last.month == first.month + 2:
        return f"{first.year:04d}-Q{(first.month + 2) // 3}"
    return None


def period_from_query(period: str | None, first: date | None, last: date | None) -> Period:
    if period is not None:
        if first is not None or last is not None:
            raise invalid("/query/period", "give either period or from/to, not both")
        return parse_period(period)
    if first is None or last is None:
        raise invalid("/query/period", "give period=YYYY-Qn|YYYY-MM|YYYY or both from and to")
    if last < first:
        raise invalid("/query/to", "to must not be before from")
    for name, value in (("from", first), ("to", last)):
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            raise invalid(f"/query/{name}", f"{name} must be between {MIN_YEAR} and {MAX_YEAR}")
    if (last - first).days > 366 * 50:
        raise invalid("/query/to", "a range may span at most 50 years")
    return Period(first, last, label_of(first, last))
