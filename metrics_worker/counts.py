"""Daily counts: running totals the projection keeps, so summaries never scan every case.

Each row says how much a measure grew on one local day for one key. Counts over a period are
sums over its days; "open at a moment" is "received before it" minus "closed before it", and
"in status X at a moment" is "entered X before it" minus "left X before it". Because reporting
periods start and end at local midnight, per-day rows give exact answers. The same sums are kept
by month and by year (``metrics.period_counts``), so a period of any length, and everything
before it, is read from a bounded number of rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.calendar import Span, day_sql, spans, until

CONTACTS = "contacts"                      # key: kind
RECEIVED_CHANNEL = "received_channel"      # key: channel (received reports only)
RECEIVED_SUBSTANCE = "received_substance"  # key: substance
RECEIVED_AGENCY = "received_agency"        # key: agency code
OPENED = "opened"                          # key: year received (cases)
REGISTERED = "registered"                  # key: ""
EXAMINED = "examined"                      # key: year received; first entry to examination
CLOSED = "closed"                          # key: year received
CLOSED_EXAMINED = "closed_examined"        # key: year received; closed after examination
CLOSED_STAGE = "closed_stage"              # key: closure stage
CLOSED_REASON = "closed_reason"            # key: closure reason
STATUS_IN = "status_in"                    # key: status entered (open statuses)
STATUS_OUT = "status_out"                  # key: status left
# Contacts of channel on_the_spot by place (normalised): a period's distinct places are the
# keys it has, read from a few rows per place instead of the period's contacts.
ON_THE_SPOT_PLACE = "on_the_spot_place"    # key: place
CLARIFICATION_REQUESTED = "clarification_requested"  # key: agency asked
# A clarification request is overdue at moment m when it was made and due before m and the
# case took no next step before m. Counted at max(asked, due) (``OVERDUE_FROM``) and, once
# the next step is known, at max(asked, due, next step) (``OVERDUE_ENDED``): those overdue at
# m are the first counted before m minus the second counted before m.
OVERDUE_FROM = "overdue_from"              # key: agency asked
OVERDUE_ENDED = "overdue_ended"            # key: agency asked

# The figures of ``GET /v1/metrics/monthly`` by group: contacts of any kind by channel,
# substance and agency (by kind: ``CONTACTS``); received reports are the ``RECEIVED_*`` measures
# (by kind: the contacts of the kinds that open a case); register and close steps by the
# grouping column of their case. The agency of a contact, and of its case's steps, is the one
# the case has now: ``assign_agency`` moves what was counted for ``unassigned``.
GROUPINGS = ("kind", "channel", "substance", "agency")
CONTACTS_AGENCY = "contacts_agency"
CONTACTS_BY = {"kind": CONTACTS, "channel": "contacts_channel",
               "substance": "contacts_substance", "agency": CONTACTS_AGENCY}
RECEIVED_BY = {"channel": RECEIVED_CHANNEL, "substance": RECEIVED_SUBSTANCE,
               "agency": RECEIVED_AGENCY}
REGISTERED_BY = {grouping: f"registered_{grouping}" for grouping in GROUPINGS}
CLOSED_BY = {grouping: f"closed_{grouping}" for grouping in GROUPINGS}

# Measures whose totals before a moment are needed ("open at a moment" figures).
RUNNING = (OPENED, EXAMINED, CLOSED, CLOSED_EXAMINED, STATUS_IN, STATUS_OUT, OVERDUE_FROM,
           OVERDUE_ENDED)
# Measures a summary sums over its period (places are counted apart): named, so that its read
# takes only their rows (``ix_period_counts_measure``), not the monthly figures' too.
SUMMED = (CONTACTS, RECEIVED_CHANNEL, RECEIVED_SUBSTANCE, RECEIVED_AGENCY, REGISTERED,
          CLOSED_STAGE, CLOSED_REASON, CLARIFICATION_REQUESTED, *RUNNING)

Increment = tuple[datetime, str, str]

# The increments of the place and liaison measures as the fact tables imply them: (at,
# measure, key), one row per unit counted. Read by the set-based rebuild; the migration that
# introduced these measures filled them with a copy of it.
PLACE_AND_LIAISON_INCREMENTS = f"""
  SELECT received_at AS at, '{ON_THE_SPOT_PLACE}' AS measure, place AS key
  FROM metrics.contacts WHERE channel = 'on_the_spot' AND place IS NOT NULL
  UNION ALL
  SELECT at, '{CLARIFICATION_REQUESTED}', agency FROM metrics.transitions
  WHERE action = 'request_clarification'
  UNION ALL
  SELECT greatest(at, due_at), '{OVERDUE_FROM}', agency FROM metrics.transitions
  WHERE action = 'request_clarification' AND due_at IS NOT NULL
  UNION ALL
  SELECT greatest(q.at, q.due_at, n.at), '{OVERDUE_ENDED}', q.agency
  FROM metrics.transitions q
  JOIN metrics.transitions n ON n.case_id = q.case_id AND n.version = q.version + 1
  WHERE q.action = 'request_clarification' AND q.due_at IS NOT NULL"""


def _keyed(measures: dict[str, str], alias: str) -> str:
    """``m.measure, key`` for each grouping's measure, the key being the grouping's column of
    ``alias``; to be followed by ``FROM <alias's table> CROSS JOIN measures``."""
    keys = " ".join(f"WHEN '{measure}' THEN {alias}.{grouping}"
                    for grouping, measure in measures.items())
    return f"m.measure, CASE m.measure {keys} END AS key"


def _measures(measures: dict[str, str]) -> str:
    return "(VALUES " + ", ".join(f"('{m}')" for m in measures.values()) + ") AS m (measure)"


# The increments of the monthly-only measures as the fact tables imply them: (at, measure,
# key), one row per unit counted (how the benchmarks' data and the migration that introduced
# these measures got them; ``metrics_worker.aggregates`` states them with the others).
_CONTACT_GROUPINGS = {g: CONTACTS_BY[g] for g in GROUPINGS[1:]}
MONTHLY_INCREMENTS = f"""
  SELECT a.received_at AS at, {_keyed(_CONTACT_GROUPINGS, "a")}
  FROM metrics.contacts a CROSS JOIN {_measures(_CONTACT_GROUPINGS)}
  UNION ALL
  SELECT t.at, {_keyed(REGISTERED_BY, "c")}
  FROM metrics.transitions t JOIN metrics.cases c ON c.case_id = t.case_id
  CROSS JOIN {_measures(REGISTERED_BY)} WHERE t.action = 'register'
  UNION ALL
  SELECT t.at, {_keyed(CLOSED_BY, "c")}
  FROM metrics.transitions t JOIN metrics.cases c ON c.case_id = t.case_id
  CROSS JOIN {_measures(CLOSED_BY)} WHERE t.to_status = 'closed'"""


# One statement whatever the number of increments (three arrays as its parameters): compiled
# and prepared once, where a row of parameters per increment would be compiled every time.
_ADD = text("""
    WITH increments (day, measure, key, n) AS (
      SELECT (at AT TIME ZONE metrics.office_timezone())::date, measure, key, n
      FROM unnest(CAST(:ats AS timestamptz[]), CAST(:measures AS varchar[]),
                  CAST(:keys AS varchar[]), CAST(:ns AS integer[])) AS i (at, measure, key, n)),
    daily AS (
      INSERT INTO metrics.daily_counts (day, measure, key, n)
      SELECT day, measure, key, sum(n) FROM increments GROUP BY 1, 2, 3
      ON CONFLICT (day, measure, key) DO UPDATE SET n = daily_counts.n + EXCLUDED.n)
    INSERT INTO metrics.period_counts (grain, start, measure, key, n)
    SELECT g.grain, date_trunc(g.unit, i.day)::date, i.measure, i.key, sum(i.n)
    FROM increments i CROSS JOIN (VALUES ('m', 'month'), ('y', 'year')) AS g (grain, unit)
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (grain, start, measure, key) DO UPDATE SET n = period_counts.n + EXCLUDED.n
    """)


async def add(session: AsyncSession, increments: Sequence[Increment],
              decrements: Sequence[Increment] = ()) -> None:
    """Adds one to each (moment, measure, key) of ``increments`` and takes one away for each
    of ``decrements`` (a received report counted against another agency: ``assign_agency``),
    on the moment's local day, month and year. A count taken down to 0 keeps its row, as a
    rebuild's (``metrics_worker.tally``) does."""
    if not increments and not decrements:
        return
    ats, measures, keys = zip(*increments, *decrements, strict=True)
    await session.execute(_ADD, {"ats": list(ats), "measures": list(measures),
                                 "keys": list(keys),
                                 "ns": [1] * len(increments) + [-1] * len(decrements)})


def spans_sql(spans: Sequence[Span]) -> str:
    """One ``SELECT measure, key, n`` per span, from the table of its grain, UNION ALL'ed."""
    parts = []
    for span in spans:
        bounds = f"BETWEEN {day_sql(span.first)} AND {day_sql(span.last)}"
        if span.grain == "d":
            parts.append(f"SELECT measure, key, n FROM metrics.daily_counts WHERE day {bounds}")
        else:
            parts.append(f"SELECT measure, key, n FROM metrics.period_counts "
                         f"WHERE grain = '{span.grain}' AND start {bounds}")
    return " UNION ALL ".join(parts) or "SELECT NULL::text, NULL::text, 0::bigint WHERE false"


def parts_sql(first: date, last: date) -> str:
    """The counts a summary of ``[first, last]`` needs, as rows ``(part, measure, key, n)``:
    ``within`` the period (``SUMMED``), ``before`` its start (running measures
    only), ``month`` (per month in ``measure``: received reports in ``n``, the most frequent
    substance, alphabetically first on a tie, in ``key``) and ``places`` (how many distinct
    on-the-spot places, in ``n``). A bounded number of rows whatever the period's
    length (see ``metrics_worker.calendar``)."""
    within = spans_sql(spans(first, last))
    before = spans_sql(until(first))
    running = ", ".join(f"'{measure}'" for measure in RUNNING)
    return f"""
        SELECT 'within' AS part, measure, key, sum(n) AS n FROM ({within}) w
        WHERE measure IN ({_listed(SUMMED)}) GROUP BY 1, 2, 3
        UNION ALL
        SELECT 'before', measure, key, sum(n) FROM ({before}) b
        WHERE measure IN ({running}) GROUP BY 1, 2, 3
        UNION ALL
        SELECT 'month', to_char(month, 'YYYY-MM'), top, received FROM (
          SELECT DISTINCT ON (month) month, key AS top,
                 sum(sum(n)) OVER (PARTITION BY month) AS received
          FROM ({months_sql(first, last, (RECEIVED_SUBSTANCE,))}) m
          GROUP BY month, key ORDER BY month, sum(n) DESC, key) m
        UNION ALL
        SELECT 'places', NULL, NULL, count(*) FROM (
          SELECT key FROM ({within}) p WHERE measure = '{ON_THE_SPOT_PLACE}'
          GROUP BY key HAVING sum(n) > 0) p"""


@dataclass
class Totals:
    """Sums of the daily counts for a period ``[first, last]``."""

    within: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    before_start: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    through_end: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    by_month: dict[str, int] = field(default_factory=dict)  # received reports
    top_substance: dict[str, str] = field(default_factory=dict)  # by month
    places: int = 0

    def total(self, part: dict[str, dict[str, int]], measure: str) -> int:
        return sum(part.get(measure, {}).values())

    def take(self, part: str, measure: str, key: str, n: int) -> None:
        """One row of ``parts_sql`` other than ``places``."""
        if part == "month":
            self.by_month[measure], self.top_substance[measure] = n, key
        else:
            (self.within if part == "within" else self.before_start)[measure][key] = n

    def close(self) -> Totals:
        """Derives the running totals through the period's end, once every row is taken."""
        for measure in RUNNING:
            before_start = self.before_start.get(measure, {})
            within_period = self.within.get(measure, {})
            self.through_end[measure] = {
                key: before_start.get(key, 0) + within_period.get(key, 0)
                for key in {*before_start, *within_period}}
        return self


def _listed(measures: Sequence[str]) -> str:
    return ", ".join(f"'{measure}'" for measure in measures)


def months_sql(first: date, last: date, measures: Sequence[str]) -> str:
    """Rows ``(month, measure, key, n)`` of ``measures`` in ``[first, last]``, ``month`` the
    date of its first day: month rows, and day rows for a month the range cuts (to be summed by
    month). A bounded number of rows per month whatever the number of cases. The month is
    written as text (``YYYY-MM``) by the caller once its rows are summed: ``to_char`` on every
    row read took a third of the time of eight years of monthly figures by agency."""
    wanted = _listed(measures)
    parts = []
    for span in spans(first, last):
        # Whole years are read as their months (kept too), since months are wanted here.
        final = date(span.last.year, 12, 1) if span.grain == "y" else span.last
        bounds = f"BETWEEN {day_sql(span.first)} AND {day_sql(final)}"
        if span.grain == "d":
            parts.append(f"SELECT date_trunc('month', day::timestamp)::date AS month, "
                         f"measure, key, n "
                         f"FROM metrics.daily_counts WHERE measure IN ({wanted}) "
                         f"AND day {bounds}")
        else:
            parts.append(f"SELECT start AS month, measure, key, n "
                         f"FROM metrics.period_counts WHERE grain = 'm' "
                         f"AND measure IN ({wanted}) AND start {bounds}")
    return " UNION ALL ".join(parts) or \
        "SELECT NULL::date, NULL::text, NULL::text, 0::bigint WHERE false"


def keys_sql(first: date, last: date, measures: Sequence[str]) -> str:
    """The keys with a count above 0 in ``[first, last]`` for any of ``measures`` (a key whose
    counts were all moved to another, by ``assign_agency``, keeps rows of 0)."""
    return f"""
        SELECT key FROM ({spans_sql(spans(first, last))}) s
        WHERE measure IN ({_listed(measures)}) GROUP BY key HAVING sum(n) > 0"""
