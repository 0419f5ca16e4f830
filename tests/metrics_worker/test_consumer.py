"""The metrics projection applied a batch at a time leaves every figure as one event at a time.

A batch is one transaction: contacts and openings in one statement each, a case's steps folded
in order (several of one case in one batch), redelivered events skipped by the processed-event
guard, and a batch that fails applied again one event at a time so that only the poison event
is dead-lettered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from metrics_worker.consumer import SUBSCRIPTION, project_batch
from metrics_worker.rebuild import read_model_tables, rebuild
from shared.db import Base, Database
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    CASES_TOPIC,
    COMPLAINT_RECEIVED,
    COMPLAINTS_TOPIC,
    Event,
    new_event,
)
from tests.fixtures.event_log import Log, Record, generate, to_database
from tests.shared.batches import Applied, applied_one_by_one, events_of, processed_ids
from tests.support import BackingServices

RECEIVED = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)


async def snapshot(database_url: str) -> dict[str, list[Any]]:
    """Every table the projection writes, and the events it marked processed."""
    result: dict[str, list[Any]] = {}
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        for table in read_model_tables():
            columns = len(Base.metadata.tables[f"metrics.{table}"].columns)
            order = ", ".join(str(i + 1) for i in range(columns))
            result[table] = list(await session.execute(
                text(f"SELECT * FROM metrics.{table} ORDER BY {order}")))
        result["processed_events"] = await processed_ids(session, SUBSCRIPTION)
    return result


async def test_a_log_applied_in_batches_gives_the_figures_one_at_a_time_gives(
        services: BackingServices, second_database_url: str) -> None:
    log = generate(120, seed=11)
    events = events_of(log)
    single = await applied_one_by_one(services.database_url, SUBSCRIPTION, events)
    async with Database.opened(second_database_url, pool_size=2) as database:
        batched = Applied(database, SUBSCRIPTION)
        await batched.in_batches(events, 120)
        alone, dead, failed = await snapshot(second_database_url), batched.dead_ids(), \
            batched.batches_failed
        # Everything delivered again: the processed-event guard makes it all a no-op (what
        # was dead-lettered fails again, applied one at a time).
        await batched.in_batches(events, 120)

    expected = await snapshot(services.database_url)
    assert (len(expected["contacts"]), len(expected["cases"]), len(expected["transitions"])) \
        == (log.complaints, log.cases, log.transitions)
    assert alone == expected
    assert await snapshot(second_database_url) == expected
    # The unknown type and the step of a case never opened, and nothing else.
    assert len(single.dead) == 2
    assert dead == single.dead_ids()
    # The batches holding them were applied one event at a time; the others whole.
    assert 1 <= failed <= 2


def case_events(case_id: str, agency: str = "pln-uiw-babel") -> list[Event]:
    """A complaint, its case and five steps: asked for a clarification, answered, closed."""
    received = RECEIVED.isoformat()
    events = [
        new_event(COMPLAINT_RECEIVED, source="/aduan/intake", subject=case_id, data={
            "id": case_id, "kind": "report", "channel": "on_the_spot", "substance": "energy",
            "reported_agency": {"code": agency, "name": "PLN"}, "received_at": received,
            "location": {"place": " Pasar  Pagi "}}),
        new_event(CASE_OPENED, source="/aduan/case", subject=case_id, data={
            "case_id": case_id, "kind": "report", "channel": "on_the_spot",
            "substance": "energy", "agency": agency, "received_at": received,
            "status": "received", "version": 1}),
    ]
    at = RECEIVED
    steps = [("register", "received", "registered", {}),
             ("start_examination", "registered", "in_examination", {}),
             ("request_clarification", "in_examination", "awaiting_agency",
              {"due_at": (RECEIVED + timedelta(days=1)).isoformat()}),
             ("respond", "awaiting_agency", "agency_responded", {"resolution": "resolved"}),
             ("close", "agency_responded", "closed",
              {"closure_stage": "examination", "reason": "resolved_by_agency"})]
    for version, (action, source, target, extra) in enumerate(steps, start=2):
        at += timedelta(hours=30)
        events.append(new_event(CASE_TRANSITIONED, source="/aduan/case", subject=case_id, data={
            "case_id": case_id, "version": version, "action": action, "from_status": source,
            "to_status": target, "at": at.isoformat(), "agency": agency, **extra}))
    return events


async def test_steps_of_one_case_in_one_batch_redeliveries_and_a_poison_event(
        services: BackingServices, second_database_url: str) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    ours, theirs = case_events(first), case_events(second, agency="samsat")
    poison = new_event(CASE_TRANSITIONED, source="/aduan/case", subject=second, data={
        **theirs[-1].data, "version": "six"})
    register = ours[2]
    respond_again = dataclasses.replace(ours[5], id=str(uuid.uuid4()))  # another event id
    batch = [*ours[:4], register, ours[4], ours[5], poison, respond_again, *theirs, ours[6],
             register]
    single = await applied_one_by_one(services.database_url, SUBSCRIPTION, batch)
    async with Database.opened(second_database_url, pool_size=2) as database:
        batched = Applied(database, SUBSCRIPTION)
        await batched.in_batches(ours[:2], 10)  # delivered before: redelivered in the batch
        await batched.in_batches(batch, len(batch))

    assert batched.batches_failed == 1
    assert batched.dead_ids() == single.dead_ids() == [poison.id]
    model = await snapshot(second_database_url)
    assert model == await snapshot(services.database_url)
    cases = {str(row.case_id): row for row in model["cases"]}
    assert len(model["contacts"]) == 2
    assert [len([t for t in model["transitions"] if str(t.case_id) == case]) for case in
            (first, second)] == [5, 5]
    closed = cases[first]
    assert (closed.status, closed.version, closed.closure_stage, closed.closed_after_days) \
        == ("closed", 6, "examination", 6)
    respond = next(t for t in model["transitions"] if str(t.case_id) == first and t.version == 5)
    assert (respond.answered_after_hours, respond.asked_at) == (30, RECEIVED + timedelta(
        hours=90))
    counted = {(row.measure, row.key): row.n for row in model["daily_counts"]
               if row.measure in ("closed", "examined", "clarification_requested",
                                  "overdue_ended", "on_the_spot_place")}
    assert counted == {("closed", "2026"): 2, ("examined", "2026"): 2,
                       ("clarification_requested", "pln-uiw-babel"): 1,
                       ("clarification_requested", "samsat"): 1,
                       ("overdue_ended", "pln-uiw-babel"): 1, ("overdue_ended", "samsat"): 1,
                       ("on_the_spot_place", "pasar pagi"): 2}


def assigned_case_events(case_id: str) -> list[Event]:
    """A report filed under ``unassigned``, its case, and the agency given to it."""
    received = RECEIVED.isoformat()
    unassigned = {"code": "unassigned", "name": "Belum ditentukan (unassigned)"}
    given = {"code": "pln-uiw-babel", "name": "PT PLN (Persero) UIW Bangka Belitung"}
    return [
        new_event(COMPLAINT_RECEIVED, source="/aduan/intake", subject=case_id, data={
            "id": case_id, "kind": "report", "channel": "open311", "substance": "energy",
            "reported_agency": unassigned, "received_at": received}),
        new_event(CASE_OPENED, source="/aduan/case", subject=case_id, data={
            "case_id": case_id, "kind": "report", "channel": "open311", "substance": "energy",
            "agency": "unassigned", "received_at": received, "status": "received",
            "version": 1}),
        new_event(CASE_TRANSITIONED, source="/aduan/case", subject=case_id, data={
            "case_id": case_id, "version": 2, "action": "assign_agency",
            "from_status": "received", "to_status": "received",
            "at": (RECEIVED + timedelta(hours=3)).isoformat(), "agency": given["code"],
            "reported_agency": given}),
    ]


async def figures(database_url: str) -> dict[str, list[Any]]:
    model = await snapshot(database_url)
    del model["processed_events"]  # applied here without the guard: the figures only
    return model


async def test_a_contact_recorded_while_another_consumer_opens_and_assigns_its_case(
        services: BackingServices) -> None:
    """Two consumers: one records the contact of a report filed under ``unassigned`` (its
    case not opened yet) and has not committed while the other opens the case and gives it
    an agency. The assignment waits for the contact, so the report ends counted for the
    agency given, as a rebuild of the same log counts it."""
    case_id = str(uuid.uuid4())
    contact, opened, assigned = assigned_case_events(case_id)
    await to_database(Log(records=[
        Record(COMPLAINTS_TOPIC if event.type == COMPLAINT_RECEIVED else CASES_TOPIC,
               event.subject, event.to_json(), event.id)
        for event in (contact, opened, assigned)]), services.database_url)

    async def open_and_assign(database: Database) -> None:
        for event in (opened, assigned):  # each its own batch, as another consumer's
            async with database.transaction() as session:
                await project_batch(session, [event])

    async with Database.opened(services.database_url, pool_size=3) as database:
        async with database.transaction() as recording:
            await project_batch(recording, [contact])
            other = asyncio.create_task(open_and_assign(database))
            waited = await _waits_for_a_lock(database, other)
        await asyncio.wait_for(other, timeout=10)

    live = await figures(services.database_url)
    assert [(str(row.complaint_id), row.agency) for row in live["contacts"]] \
        == [(case_id, "pln-uiw-babel")]
    received = {row.key: row.n for row in live["daily_counts"]
                if row.measure == "received_agency" and row.n}
    assert received == {"pln-uiw-babel": 1}
    await rebuild(services.settings())
    assert await figures(services.database_url) == live
    assert waited, "the assignment did not wait for the contact being recorded"


async def _waits_for_a_lock(database: Database, task: asyncio.Task[None],
                            sessions: int = 1) -> bool:
    """True once ``sessions`` other sessions of this database wait for a lock, False if
    ``task`` ends first."""
    async with database.autocommit() as connection:
        for _ in range(500):
            if task.done():
                return False
            if await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'") >= sessions:
                return True
            await asyncio.sleep(0.02)
    raise AssertionError("the other consumer neither ended nor waited in 10 s")


async def test_two_consumers_crossing_contacts_and_assignments_do_not_deadlock(
        services: BackingServices) -> None:
    """One consumer's batch holds the contact of X and X's case's assignment comes in the
    other's, which holds the contact of Z whose assignment the first has: each batch takes
    every case lock it needs at once, in one order, so the second waits for the first rather
    than the two waiting for each other (a deadlock, the batch retried after a second). The
    first is held between its contacts and its steps by an opening a third has not
    committed."""
    x, z, w = (str(uuid.uuid4()) for _ in range(3))
    contact_x, opened_x, assigned_x = assigned_case_events(x)
    contact_z, opened_z, assigned_z = assigned_case_events(z)
    opened_w = assigned_case_events(w)[1]
    async with Database.opened(services.database_url, pool_size=4) as database:
        async with database.transaction() as session:
            await project_batch(session, [opened_x, opened_z])

        async def batch(events: list[Event]) -> None:
            async with database.transaction() as session:
                await project_batch(session, events)

        async with database.transaction() as third:
            await project_batch(third, [opened_w])
            first = asyncio.create_task(batch([contact_x, opened_w, assigned_z]))
            assert await _waits_for_a_lock(database, first)
            second = asyncio.create_task(batch([contact_z, assigned_x]))
            assert await _waits_for_a_lock(database, second, sessions=2)
        await asyncio.wait_for(asyncio.gather(first, second), timeout=20)

    model = await figures(services.database_url)
    assert sorted((str(row.complaint_id), row.agency) for row in model["contacts"]) \
        == sorted([(x, "pln-uiw-babel"), (z, "pln-uiw-babel")])
