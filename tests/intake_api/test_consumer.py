"""Each complaint follows its case, a batch of case events at a time, as one at a time would.

A batch is read in one query and written in one update: a complaint's several changes in one
batch folded in order (a resolution said once stays said), an older change delivered late
passed over, redelivered events skipped, and a poison event dead-lettered by the runner while
its neighbours are applied.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from intake_api.consumer import CONSUMER, SUBSCRIPTION
from shared.bus import DatabaseLogRunner
from shared.db import Database
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    CASES_TOPIC,
    COMPLAINT_RECEIVED,
    Event,
    new_event,
)
from shared.runtime import DATABASE_LOGS
from tests.fixtures.event_log import Log, Record, generate, to_database
from tests.intake_api.recorded import record_complaints
from tests.shared.batches import POLICY, Applied, applied_one_by_one, events_of, processed_ids
from tests.support import BackingServices

AT = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
FOLLOWED = ("status, case_version, case_updated_at, due_at, closure_stage, closure_reason, "
            "resolution, transferred_to, closed_at")


async def snapshot(database_url: str) -> dict[str, list[Any]]:
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        return {
            "complaints": list(await session.execute(text(
                f"SELECT id, {FOLLOWED} FROM intake.complaints ORDER BY id"))),
            "processed": await processed_ids(session, SUBSCRIPTION),
        }


async def test_case_events_in_batches_leave_each_complaint_as_one_at_a_time(
        services: BackingServices, second_database_url: str) -> None:
    log = generate(150, seed=5)
    complaints = events_of(log)
    events = events_of(log, CASES_TOPIC)
    for url in (services.database_url, second_database_url):
        await record_complaints(url, complaints)
    single = await applied_one_by_one(services.database_url, SUBSCRIPTION, events)
    async with Database.opened(second_database_url, pool_size=2) as database:
        batched = Applied(database, SUBSCRIPTION)
        await batched.in_batches(events, 100)
        dead, failed = batched.dead_ids(), batched.batches_failed
        alone = await snapshot(second_database_url)
        await batched.in_batches(events, 100)  # everything again: nothing changes

    expected = await snapshot(services.database_url)
    assert alone == expected
    assert await snapshot(second_database_url) == expected
    assert len({row.status for row in expected["complaints"]}) > 3
    # The step of a case no complaint has: dead-lettered, and its batch applied one by one.
    assert len(single.dead) == 1
    assert dead == single.dead_ids()
    assert failed == 1


def steps(complaint_id: str) -> list[Event]:
    """The case of ``complaint_id``: opened, then five steps to its closure."""
    events = [new_event(CASE_OPENED, source="/aduan/case", subject=complaint_id, data={
        "case_id": complaint_id, "kind": "report", "status": "received", "version": 1,
        "agency": "pln-uiw-babel", "substance": "energy", "channel": "partner_api",
        "received_at": AT.isoformat()})]
    path = [("register", "registered", {}), ("start_examination", "in_examination", {}),
            ("request_clarification", "awaiting_agency",
             {"due_at": (AT + timedelta(days=14)).isoformat()}),
            ("respond", "agency_responded", {"resolution": "resolved"}),
            ("close", "closed", {"closure_stage": "examination",
                                 "reason": "resolved_by_agency"})]
    status = "received"
    for version, (action, target, extra) in enumerate(path, start=2):
        events.append(new_event(CASE_TRANSITIONED, source="/aduan/case", subject=complaint_id,
                                data={"case_id": complaint_id, "version": version,
                                      "action": action, "from_status": status,
                                      "to_status": target,
                                      "at": (AT + timedelta(hours=version)).isoformat(),
                                      "agency": "pln-uiw-babel", **extra}))
        status = target
    return events


def record(event: Event) -> Record:
    return Record(CASES_TOPIC, event.subject, event.to_json(), event.id)


async def test_the_runner_folds_a_batch_and_applies_one_around_its_poison_event(
        services: BackingServices) -> None:
    complaint_id = str(uuid.uuid4())
    other = str(uuid.uuid4())
    received = [new_event(COMPLAINT_RECEIVED, source="/aduan/intake", subject=c, data={
        "id": c, "kind": "report", "channel": "partner_api", "substance": "energy",
        "received_at": AT.isoformat(),
        "reported_agency": {"code": "pln-uiw-babel", "name": "PLN"}}) for c in (complaint_id,
                                                                                other)]
    await record_complaints(services.database_url, received)
    case, neighbour = steps(complaint_id), steps(other)
    # The request again under another event id, delivered after the closure: passed over.
    late = dataclasses.replace(case[3], id=str(uuid.uuid4()))
    poison = new_event(CASE_TRANSITIONED, source="/aduan/case", subject=other,
                       data={**neighbour[3].data, "version": "four"})

    async def logged(*events: Event) -> None:
        await to_database(Log(records=[record(e) for e in events]), services.database_url)

    async with Database.opened(services.database_url, pool_size=2) as database:
        runner = DatabaseLogRunner(SUBSCRIPTION, database, DATABASE_LOGS, policy=POLICY)
        await logged(*case[:3])
        assert await runner.step(CASES_TOPIC) == 3
        # Read again from the start (delivered again), with the request, the answer and the
        # closure in the same batch.
        async with database.transaction() as session:
            await session.execute(text(
                "UPDATE intake.log_positions SET position = 0 WHERE consumer = :c"),
                {"c": CONSUMER})
        await logged(*case[3:], late, *neighbour[:3])
        assert await runner.step(CASES_TOPIC) == 10
        closed_at = AT + timedelta(hours=6)
        followed = await _followed(services.database_url)
        assert followed[complaint_id] == (
            "closed", 6, closed_at, None, "examination", "resolved_by_agency", "resolved",
            None, closed_at)
        assert followed[other][:2] == ("in_examination", 3)

        await logged(poison, *neighbour[3:5])
        assert await runner.step(CASES_TOPIC) == 3
        assert await runner.step(CASES_TOPIC) == 0

    dead = await _rows(services.database_url,
                       "SELECT event_id FROM intake.dead_letters WHERE consumer = :c")
    assert [row.event_id for row in dead] == [poison.id]
    followed = await _followed(services.database_url)
    assert followed[other][:2] == ("agency_responded", 5)
    assert followed[other][6] == "resolved"


async def _followed(database_url: str) -> dict[str, tuple[Any, ...]]:
    return {str(row.id): tuple(row)[1:] for row in (await snapshot(database_url))["complaints"]}


async def _rows(database_url: str, sql: str) -> list[Any]:
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        return list(await session.execute(text(sql), {"c": CONSUMER}))
