"""``GET /v1/metrics/monthly`` answers from the counts the projection keeps, and its rows are
those a plain count over the fact rows gives: for a random history (sparse, so that many months
and groups are empty), live and rebuilt, for every ``group_by``, whole and cut months, months
before and after every record, and cases given their agency (``assign_agency``) before and
after they were registered.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from metrics_worker.periods import Period
from metrics_worker.rebuild import rebuild
from services.migrate import alembic_config
from shared.db import Database
from shared.events import CASE_OPENED, CASE_TRANSITIONED, CASES_TOPIC, COMPLAINT_RECEIVED
from shared.events import COMPLAINTS_TOPIC as COMPLAINTS
from shared.vocabulary import CASE_OPENING_KINDS, UNASSIGNED_AGENCY_CODE
from tests.fixtures.event_log import Log, _event, _iso, _record, generate, to_database
from tests.metrics_worker.test_replay import consume_database_log
from tests.support import BackingServices, bearer, running_app

pytestmark = pytest.mark.timeout(240)

GROUP_BYS = ("none", "channel", "substance", "agency", "kind")
REPORT_KINDS = tuple(sorted(kind.value for kind in CASE_OPENING_KINDS))
ZONE = ZoneInfo("Asia/Jakarta")  # the office's, as the tests' services run
REVISION = "20261130_monthly_counts"

# The figures counted straight from the fact rows, as METRICS.md defines them.
FROM_FACTS = """
    WITH contacts AS (
      SELECT to_char(received_at AT TIME ZONE :tz, 'YYYY-MM') AS month, {column} AS grp,
             count(*) AS contacts, count(*) FILTER (WHERE kind IN {reports}) AS received
      FROM metrics.contacts WHERE received_at >= :s AND received_at < :e GROUP BY 1, 2),
    registered AS (
      SELECT to_char(t.at AT TIME ZONE :tz, 'YYYY-MM') AS month, {case_column} AS grp,
             count(DISTINCT t.case_id) AS registered
      FROM metrics.transitions t JOIN metrics.cases c ON c.case_id = t.case_id
      WHERE t.action = 'register' AND t.at >= :s AND t.at < :e GROUP BY 1, 2),
    closed AS (
      SELECT to_char(closed_at AT TIME ZONE :tz, 'YYYY-MM') AS month, {column} AS grp,
             count(*) AS closed
      FROM metrics.cases WHERE closed_at >= :s AND closed_at < :e GROUP BY 1, 2)
    SELECT coalesce(a.month, r.month, c.month) AS month, coalesce(a.grp, r.grp, c.grp) AS grp,
           coalesce(a.contacts, 0), coalesce(a.received, 0), coalesce(r.registered, 0),
           coalesce(c.closed, 0)
    FROM contacts a
    FULL JOIN registered r ON r.month = a.month AND r.grp = a.grp
    FULL JOIN closed c ON c.month = coalesce(a.month, r.month)
                      AND c.grp = coalesce(a.grp, r.grp)"""


async def from_facts(database_url: str, first: date, last: date,
                     group_by: str) -> list[dict[str, Any]]:
    """Every month of ``[first, last]`` for every group with a fact row in it."""
    period = Period(first, last, None)
    start, end = period.bounds(ZONE)
    column = "''" if group_by == "none" else group_by
    sql = FROM_FACTS.format(column=column, reports=REPORT_KINDS,
                            case_column=column if group_by == "none" else f"c.{column}")
    async with Database.opened(database_url) as database, database.transaction() as session:
        rows = (await session.execute(text(sql), {"tz": ZONE.key, "s": start,
                                                  "e": end})).all()
    found = {(row[0], row[1]): list(row[2:]) for row in rows}
    groups = [""] if group_by == "none" else sorted({row[1] for row in rows})
    return [{"month": month, "group": group,
             **dict(zip(("contacts", "received", "registered", "closed"),
                        found.get((month, group), [0, 0, 0, 0]), strict=True))}
            for group in groups for month in period.months()]


def assigned_after_registration(first: datetime, cases: int) -> Log:
    """Reports filed under ``unassigned``, registered, then given their agency; half of them
    then examined and closed in a later month."""
    log = Log()
    r = random.Random(3)
    for n in range(cases):
        case_id = str(uuid.UUID(int=r.getrandbits(128), version=4))
        at = first + timedelta(days=37 * n, hours=r.uniform(0, 20))
        agency = f"agency-{n % 3:02d}"
        data = {"id": case_id, "kind": "report", "channel": "website",
                "substance": "land", "reported_agency": {"code": UNASSIGNED_AGENCY_CODE,
                                                        "name": "Belum ditentukan"},
                "summary": "Sertifikat tanah", "received_at": _iso(at), "location": None,
                "status": "received"}
        records = [_record(COMPLAINTS, _event(COMPLAINT_RECEIVED, "/aduan/intake", case_id,
                                              at, data)),
                   _record(CASES_TOPIC, _event(CASE_OPENED, "/aduan/case", case_id, at, {
                       "case_id": case_id, "kind": "report", "status": "received",
                       "version": 1, "agency": UNASSIGNED_AGENCY_CODE, "substance": "land",
                       "channel": "website", "received_at": data["received_at"]}))]
        steps: list[tuple[str, str, str, str | None, int]] = [
            ("register", "received", "registered", None, 1),
            ("assign_agency", "registered", "registered", None, 12)]
        if n % 2:
            steps += [("start_examination", "registered", "in_examination", None, 20),
                      ("close", "in_examination", "closed", "resolved_by_agency", 45)]
        for version, (action, source, target, reason, days) in enumerate(steps, start=2):
            moment = at + timedelta(days=days)
            step = {"case_id": case_id, "action": action, "from_status": source,
                    "to_status": target, "actor": "asisten", "role": "assistant",
                    "at": _iso(moment), "version": version, "reason": reason,
                    "closure_stage": "examination" if target == "closed" else None,
                    "maladministration": None, "due_at": None, "resolution": None,
                    "transferred_to": None,
                    "agency": agency if version > 3 else UNASSIGNED_AGENCY_CODE}
            if action == "assign_agency":
                step["reported_agency"] = {"code": agency, "name": "Instansi"}
            records.append(_record(CASES_TOPIC, _event(CASE_TRANSITIONED, "/aduan/case",
                                                       case_id, moment, step)))
        log.records += records
    return log


def ranges(r: random.Random) -> list[tuple[date, date]]:
    """Whole years and quarters, ranges cut mid-month, one month, and ranges reaching months
    before the first record and after the last."""
    chosen = [(date(2020, 10, 1), date(2024, 3, 31)), (date(2021, 1, 1), date(2021, 12, 31)),
              (date(2022, 4, 1), date(2022, 6, 30)), (date(2022, 2, 1), date(2022, 2, 28)),
              (date(2020, 12, 20), date(2021, 1, 9))]
    for _ in range(4):
        first = date(2020, 11, 1) + timedelta(days=r.randrange(0, 1100))
        chosen.append((first, first + timedelta(days=r.randrange(0, 400))))
    return chosen


async def monthly(client: httpx.AsyncClient, token: str, first: date, last: date,
                  group_by: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/metrics/monthly", headers=bearer(token), params={
        "from": first.isoformat(), "to": last.isoformat(), "group_by": group_by})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


async def answers_equal_facts(services: BackingServices,
                              chosen: list[tuple[date, date]]) -> dict[Any, Any]:
    analyst = await services.token("analyst")
    answered: dict[Any, Any] = {}
    async with running_app(services, "metrics") as client:
        for first, last in chosen:
            for group_by in GROUP_BYS:
                rows = await monthly(client, analyst, first, last, group_by)
                expected = await from_facts(services.database_url, first, last, group_by)
                assert rows == expected, (first, last, group_by)
                answered[first, last, group_by] = rows
    return answered


async def test_monthly_rows_equal_a_count_of_the_fact_rows_live_and_rebuilt(
    services: BackingServices,
) -> None:
    log = generate(140, seed=23, start=datetime(2021, 1, 1, tzinfo=UTC), days=365 * 3,
                   faults=False, assignments=0.3)
    extra = assigned_after_registration(datetime(2021, 3, 3, tzinfo=UTC), 8)
    log.records += extra.records
    assert sum(b'"assign_agency"' in record.value for record in log.records) > 10
    await to_database(log, services.database_url)
    await consume_database_log(services.database_url)
    chosen = ranges(random.Random(29))

    live = await answers_equal_facts(services, chosen)
    everything = live[date(2020, 10, 1), date(2024, 3, 31), "agency"]
    assert UNASSIGNED_AGENCY_CODE not in {row["group"] for row in everything}
    assert any(row["registered"] for row in everything if row["group"] == "agency-01")
    assert sum(row["closed"] for row in everything) > 20
    # Months and groups with nothing in them, and the months before the first record.
    assert any(not any(row[k] for k in ("contacts", "registered", "closed"))
               for row in everything)
    assert all(row["contacts"] == 0 for row in everything if row["month"] < "2021-01")

    await rebuild(services.settings(), batch_size=50)
    rebuilt = await answers_equal_facts(services, chosen)
    assert rebuilt == live


async def test_monthly_after_the_migration_filled_the_counts_from_the_facts(
    services: BackingServices,
) -> None:
    """The revision that introduced the monthly counts fills them from the fact rows there:
    the same rows as the projection's."""
    log = generate(60, seed=31, faults=False, assignments=0.3)
    log.records += assigned_after_registration(datetime(2021, 5, 5, tzinfo=UTC), 4).records
    await to_database(log, services.database_url)
    await consume_database_log(services.database_url)
    measures = ("contacts_channel", "contacts_substance", "contacts_agency",
                *(f"{what}_{grouping}" for what in ("registered", "closed")
                  for grouping in ("kind", "channel", "substance", "agency")))
    read = ("SELECT measure, key, sum(n) FROM metrics.{table} WHERE measure = ANY(:m) "
            "{grain} GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2")

    async def counted() -> list[Any]:
        async with Database.opened(services.database_url) as database, \
                database.transaction() as session:
            return [[tuple(row) for row in await session.execute(
                text(read.format(table=table, grain=grain)), {"m": list(measures)})]
                for table, grain in (("daily_counts", ""),
                                     ("period_counts", "AND grain = 'm'"),
                                     ("period_counts", "AND grain = 'y'"))]

    projected = await counted()
    assert projected[0]
    assert projected[0] == projected[1] == projected[2]
    config = alembic_config(services.database_url)
    await asyncio.to_thread(command.downgrade, config, f"{REVISION}-1")
    assert await counted() == [[], [], []]
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await counted() == projected
