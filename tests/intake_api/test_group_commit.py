"""Complaints posted at the same time, written together (intake_api/group_commit.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from intake_api import group_commit
from intake_api.group_commit import GroupCommit, Write, Written
from shared.db import Database
from tests.support import BackingServices, bearer, complaint, query, running_app

RECEIVED_AT = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


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

        def writer(n: int) -> Write:
            complaint_id = uuid.uuid4()

            def write(number: str, carrier: Any) -> Written:
                values: dict[str, Any] = {
                    "id": complaint_id, "tracking_number": number, "access_code_hash": None,
                    "kind": "report", "channel": "complaint_post", "substance": "electricity",
                    "reporter": {"name": "Siti"}, "reported_agency_code": "pln",
                    "reported_agency_name": "PLN", "summary": f"group {n}",
                    "description": "-", "incident_date": None,
                    "reported_to_agency_first": None, "location": None,
                    "external_reference": None,
                    "received_at": RECEIVED_AT, "submitted_by": "posko",
                    "status": "x" * 40 if n == 3 else "received"}
                event = (str(uuid.uuid4()), "aduan.complaints.v1", str(complaint_id),
                         json.dumps({"n": n}), None)
                return values, event, None  # type: ignore[return-value]

            return write

        results = await asyncio.gather(*(group.record(2026, writer(n)) for n in range(12)),
                                       return_exceptions=True)

    failed = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [3]
    assert all(not isinstance(r, BaseException) and r[1] for n, r in enumerate(results) if n != 3)
    rows = await query(services.database_url,
                       "SELECT c.summary, count(o.id) AS events FROM intake.complaints c "
                       "JOIN intake.outbox o ON o.key = c.id::text GROUP BY c.summary")
    assert sorted(row["summary"] for row in rows) == sorted(
        f"group {n}" for n in range(12) if n != 3)
    assert all(row["events"] == 1 for row in rows)


async def test_a_complaint_coming_while_a_writer_lingers_is_written_on_its_connection(
        services: BackingServices, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer keeps its connection a moment after its group (LINGER_SECONDS): a complaint
    posted then is written on it at once; once nobody comes, the connection goes back."""
    # Long enough that no step below outlasts it on a busy machine.
    monkeypatch.setattr(group_commit, "LINGER_SECONDS", 1.0)
    async with Database.opened(services.database_url, pool_size=4) as database:
        group = GroupCommit(database)

        def writer(n: int) -> Write:
            complaint_id = uuid.uuid4()

            def write(number: str, carrier: Any) -> Written:
                values: dict[str, Any] = {
                    "id": complaint_id, "tracking_number": number, "access_code_hash": None,
                    "kind": "report", "channel": "complaint_post", "substance": "electricity",
                    "reporter": None, "reported_agency_code": "pln",
                    "reported_agency_name": "PLN", "summary": f"linger {n}",
                    "description": "-", "incident_date": None,
                    "reported_to_agency_first": None, "location": None,
                    "external_reference": None, "received_at": RECEIVED_AT,
                    "submitted_by": "posko", "status": "received"}
                event = (str(uuid.uuid4()), "aduan.complaints.v1", str(complaint_id),
                         json.dumps({"n": n}), None)
                return values, event, None  # type: ignore[return-value]

            return write

        first = await group.record(2026, writer(1))
        assert len(group.writers) == 1  # lingering, its connection held
        assert database.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        second = await group.record(2026, writer(2))
        assert len(group.writers) == 1  # the same writer, on the same connection
        assert database.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        assert (first[1], second[1]) == (True, True)
        await asyncio.sleep(1.5)
        assert not group.writers
        assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    rows = await query(services.database_url,
                       "SELECT c.summary FROM intake.complaints c "
                       "JOIN intake.outbox o ON o.key = c.id::text ORDER BY c.summary")
    assert [row["summary"] for row in rows] == [f"linger {n}" for n in range(1, 3)]
