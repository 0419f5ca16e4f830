"""Complaints posted at the same time, written together (intake_api/group_commit.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from intake_api import access, group_commit, repository
from intake_api.group_commit import GroupCommit, Write, Written
from shared.db import Database
from tests.support import BackingServices, bearer, complaint, query, running_app

RECEIVED_AT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


def writer(summary: str, code: str | None = None) -> Write:
    """A complaint's write as the service makes one, reduced to what the table needs."""
    complaint_id = uuid.uuid4()

    def write(carrier: Any) -> Written:
        values: dict[str, Any] = {
            "id": complaint_id, "access_code": code,
            "kind": "report", "channel": "complaint_post", "substance": "electricity",
            "reporter": None, "reported_agency_code": "pln",
            "reported_agency_name": "PLN", "summary": summary,
            "description": "-", "incident_date": None,
            "reported_to_agency_first": None, "location": None,
            "external_reference": None, "received_at": RECEIVED_AT,
            "submitted_by": "posko", "status": "received"}
        event = (str(uuid.uuid4()), "aduan.complaints.v1", str(complaint_id),
                 json.dumps({"data": {"summary": summary, "tracking_number": ""}}), None)
        return values, event, None  # type: ignore[return-value]

    return write


async def test_concurrent_posts_are_each_recorded_once_with_their_event(
        services: BackingServices) -> None:
    """Forty posts at once, two of them with one new external reference and one with a
    reference already used: every other complaint is recorded with exactly one event, the
    reference's second post and the reused one are told which complaint has it."""
    token = await services.token("partner", "posko-pln")
    async with running_app(services, intake_group_largest=8) as client:
        used = await client.post("/v1/complaints", headers=bearer(token),
                                 json=complaint(external_reference="POSKO-USED"))
        assert used.status_code == 201

        async def post(n: int) -> Any:
            reference = {0: "POSKO-TWICE", 1: "POSKO-TWICE", 2: "POSKO-USED"}.get(n)
            body = complaint(summary=f"serentak {n}", external_reference=reference)
            return await client.post("/v1/complaints", json=body, headers=bearer(token))

        answers = await asyncio.gather(*(post(n) for n in range(40)))

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 38, 409: 2}, [a.text for a in answers if a.status_code != 201]
    twice = [a for a in answers[:2] if a.status_code == 201]
    assert len(twice) == 1
    refused = {a.json()["complaint_id"] for a in answers if a.status_code == 409}
    assert refused == {twice[0].json()["id"], used.json()["id"]}

    rows = await query(services.database_url,
                       "SELECT c.id, c.tracking_number, count(o.id) AS events "
                       "FROM intake.complaints c LEFT JOIN intake.outbox o ON o.key = c.id::text "
                       "GROUP BY c.id, c.tracking_number")
    assert len(rows) == 39  # the first one and 38 of the 40
    assert all(row["events"] == 1 for row in rows)
    orphans = await query(services.database_url,
                          "SELECT count(*) AS n FROM intake.outbox o WHERE NOT EXISTS "
                          "(SELECT FROM intake.complaints c WHERE c.id::text = o.key)")
    assert orphans[0]["n"] == 0
    created = {a.json()["id"]: a.json()["tracking_number"] for a in answers
               if a.status_code == 201}
    stored = {str(row["id"]): row["tracking_number"] for row in rows}
    assert all(stored[i] == number for i, number in created.items())
    assert len(set(stored.values())) == len(stored)


@pytest.mark.parametrize("largest", [
    pytest.param(50, id="one group"),
    # Groups written one after another on one connection: the refused one's leaves it.
    pytest.param(4, id="groups in a row"),
])
async def test_a_refused_complaint_does_not_take_its_group_with_it(
        services: BackingServices, largest: int) -> None:
    """One complaint the database refuses (a status longer than its column) amid others
    written in the same group: the others are recorded, it alone fails."""
    async with Database.opened(services.database_url, pool_size=4) as database:
        group = GroupCommit(database, largest=largest)

        first = await group.record(2026, writer("linger 1"))
        assert len(group.writers) == 1  # lingering, its connection held
        assert database.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        second = await group.record(2026, writer("linger 2"))
        assert len(group.writers) == 1  # the same writer, on the same connection
        assert database.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert first[1] is not None
        assert second[1] is not None
        await asyncio.sleep(1.5)
        assert not group.writers
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    rows = await query(services.database_url,
                       "SELECT c.summary FROM intake.complaints c "
                       "JOIN intake.outbox o ON o.key = c.id::text ORDER BY c.summary")
    assert [row["summary"] for row in rows] == [f"linger {n}" for n in range(1, 3)]


async def test_a_connection_closed_while_its_writer_lingers_is_left_for_a_fresh_one(
        services: BackingServices, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server closes the lingering writer's connection (a restart, an administrator): the
    next complaint is written on a fresh connection, not answered with the closed one's error."""
    monkeypatch.setattr(group_commit, "LINGER_SECONDS", 2.0)
    async with Database.opened(services.database_url, pool_size=4) as database:
        group = GroupCommit(database)
        assert (await group.record(2026, writer("closed 1")))[1] is not None
        assert len(group.writers) == 1  # lingering, its connection held
        await query(services.database_url,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'")
        await asyncio.sleep(0.3)  # the driver has seen its socket end
        assert (await group.record(2026, writer("closed 2")))[1] is not None

    rows = await query(services.database_url,
                       "SELECT c.summary FROM intake.complaints c "
                       "JOIN intake.outbox o ON o.key = c.id::text ORDER BY c.summary")
    assert [row["summary"] for row in rows] == ["closed 1", "closed 2"]


async def test_closing_lets_a_lingering_writer_go_with_its_connection(
        services: BackingServices, monkeypatch: pytest.MonkeyPatch) -> None:
    """At shutdown (``Runtime.stop`` awaits ``close`` before it closes the pool) a lingering
    writer gives its connection back at once, not ``LINGER_SECONDS`` later."""
    monkeypatch.setattr(group_commit, "LINGER_SECONDS", 30.0)
    async with Database.opened(services.database_url, pool_size=4) as database:
        group = GroupCommit(database)
        assert (await group.record(2026, writer("closing 1")))[1] is not None
        assert database.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        await asyncio.wait_for(group.close(), 5)
        assert not group.writers
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_group_numbers_each_year_in_the_order_given_in_one_statement(
        services: BackingServices) -> None:
    """A group of complaints of two years, written by one statement: each year's numbers go
    to its complaints in the order they were given, after the year's earlier numbers; each
    code is hashed with its number as ``access.hash_code`` does; each event's data carries its
    complaint's number."""
    async with Database.opened(services.database_url, pool_size=4) as database:
        group = GroupCommit(database)
        await group.record(2025, writer("earlier"))
        await group.close()
        years = [2025, 2026, 2025, 2026, 2025]
        written = [writer(f"{n} of {year}", code=f"CODE{n}")(None)
                   for n, year in enumerate(years)]
        async with database.autocommit() as driver:  # one group, as the writer writes it
            drawn = await repository.record_complaints(
                driver, years, [values for values, _, _ in written],
                [event for _, event, _ in written])
        numbers = [drawn[values["id"]] for values, _, _ in written]

    assert numbers == ["ADU-2025-000002", "ADU-2026-000001", "ADU-2025-000003",
                       "ADU-2026-000002", "ADU-2025-000004"]
    rows = await query(services.database_url,
                       "SELECT c.summary, c.tracking_number, c.access_code_hash, "
                       "o.envelope -> 'data' ->> 'tracking_number' AS published "
                       "FROM intake.complaints c JOIN intake.outbox o ON o.key = c.id::text "
                       "WHERE c.summary <> 'earlier'")
    stored = {row["summary"]: row for row in rows}
    for n, (year, number) in enumerate(zip(years, numbers, strict=True)):
        row = stored[f"{n} of {year}"]
        assert row["tracking_number"] == row["published"] == number
        assert access.matches(number, f"code-{n}", row["access_code_hash"])
        assert not access.matches(number, f"code-{n + 1}", row["access_code_hash"])
