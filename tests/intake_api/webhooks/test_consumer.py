"""Deliveries made a batch of events at a time are those made one event at a time.

Each subscriber hears what its role allows (an admin everything, a partner its own complaints, a
liaison its agency's cases), once per event however often the event arrives, in the events'
order; a poison event is dead-lettered and its neighbours' deliveries made.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from intake_api.webhooks.consumer import SUBSCRIPTION
from intake_api.webhooks.events import EventType
from intake_api.webhooks.models import WebhookSubscription
from shared.auth import Role
from shared.db import Database
from shared.events import (
    CASE_TRANSITIONED,
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    new_event,
)
from tests.fixtures.event_log import AGENCIES, generate
from tests.intake_api.recorded import PARTNERS, record_complaints
from tests.shared.batches import Applied, applied_one_by_one, events_of, processed_ids
from tests.support import BackingServices

EVERYTHING = [t.value for t in EventType]
SUBSCRIBERS: list[tuple[str, Role, str | None, list[str]]] = [
    ("admin", Role.admin, None, EVERYTHING),
    (PARTNERS[0], Role.partner, None, ["complaint.received", "complaint.status_changed"]),
    (PARTNERS[1], Role.partner, None, ["attachment.added"]),
    ("narahubung-03", Role.liaison, "agency-03", EVERYTHING),
    ("narahubung-07", Role.liaison, "agency-07", ["case.awaiting_agency"]),
]


async def subscribe(database_url: str) -> None:
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        for n, (owner, role, agency, events) in enumerate(SUBSCRIBERS):
            session.add(WebhookSubscription(
                id=uuid.UUID(int=n + 1), owner=owner, role=role.value, agency_code=agency,
                url=f"https://hooks.example.org/{owner}", events=events, secret="whsec_x",
                created_at=datetime(2026, 1, 1, tzinfo=UTC)))


async def deliveries(database_url: str) -> dict[str, list[Any]]:
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        return {
            "deliveries": list(await session.execute(text(
                "SELECT subscription_id, event_id, event_type, body, status, attempts "
                "FROM intake.webhook_deliveries ORDER BY 1, 2, 3"))),
            "processed": await processed_ids(session, SUBSCRIPTION),
        }


async def test_a_log_delivered_in_batches_makes_the_deliveries_one_at_a_time_makes(
        services: BackingServices, second_database_url: str) -> None:
    log = generate(80, seed=3)
    events = events_of(log)
    # A step that breaks its webhook's rendering, amid the others.
    known = {e.subject for e in events if e.type == COMPLAINT_RECEIVED}
    broken = next(e for e in events if e.type == CASE_TRANSITIONED and e.subject in known)
    poison = new_event(CASE_TRANSITIONED, source="/aduan/case", subject=broken.subject,
                       data={k: v for k, v in broken.data.items() if k != "to_status"})
    events.insert(len(events) // 2, poison)
    for url in (services.database_url, second_database_url):
        await record_complaints(url, events)
        await subscribe(url)
    single = await applied_one_by_one(services.database_url, SUBSCRIPTION, events)
    async with Database.opened(second_database_url, pool_size=2) as database:
        batched = Applied(database, SUBSCRIPTION)
        await batched.in_batches(events, 100)
        dead, failed = batched.dead_ids(), batched.batches_failed
        await batched.in_batches(events[:150], 150)  # delivered again: nothing doubles

    expected = await deliveries(services.database_url)
    assert await deliveries(second_database_url) == expected
    # The step of a case never opened waits for its complaint, the poison breaks: both
    # dead-lettered, from the batches applied one event at a time.
    assert dead == single.dead_ids()
    assert poison.id in dead
    assert len(dead) == 2
    assert 1 <= failed <= 2
    made = {(row.subscription_id.int, row.event_type) for row in expected["deliveries"]}
    assert made >= {(1, "complaint.received"), (1, "complaint.status_changed"),
                    (1, "case.awaiting_agency"), (1, "attachment.added"),
                    (2, "complaint.received"), (3, "attachment.added"),
                    (4, "complaint.status_changed")}
    assert {n for n, _ in made} <= {1, 2, 3, 4, 5}
    assert (3, "complaint.received") not in made


async def test_a_batch_keeps_the_order_of_its_events(services: BackingServices) -> None:
    log = generate(30, seed=4, faults=False)
    events = events_of(log)
    await record_complaints(services.database_url, events)
    await subscribe(services.database_url)
    async with Database.opened(services.database_url, pool_size=2) as database:
        await Applied(database, SUBSCRIPTION).in_batches(events, len(events))
        async with database.transaction() as session:
            listed = list((await session.execute(text(
                "SELECT event_id FROM intake.webhook_deliveries WHERE subscription_id = :s "
                "AND event_type = 'complaint.status_changed' ORDER BY created_at, id"),
                {"s": uuid.UUID(int=1)})).scalars())
    expected = list(dict.fromkeys(e.id for e in events if e.type == CASE_TRANSITIONED))
    assert listed == expected


async def test_events_no_one_listens_to_make_nothing_and_wait_for_nothing(
        services: BackingServices, second_database_url: str) -> None:
    """Only evidence is listened to: the other events make no deliveries, and complaints not
    recorded here hold nothing back, in batches as one at a time."""
    events = [e for e in events_of(generate(40, seed=6, faults=False))
              if e.type != COMPLAINT_ATTACHMENT_ADDED]
    for url in (services.database_url, second_database_url):
        async with Database.opened(url, pool_size=1) as database, \
                database.transaction() as session:
            session.add(WebhookSubscription(
                id=uuid.uuid4(), owner=PARTNERS[0], role=Role.partner.value, agency_code=None,
                url="https://hooks.example.org/evidence", events=["attachment.added"],
                secret="whsec_x", created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    single = await applied_one_by_one(services.database_url, SUBSCRIPTION, events)
    async with Database.opened(second_database_url, pool_size=2) as database:
        batched = Applied(database, SUBSCRIPTION)
        await batched.in_batches(events, 100)

    left = await deliveries(second_database_url)
    assert left == await deliveries(services.database_url)
    assert left["deliveries"] == []
    assert left["processed"] == sorted({e.id for e in events})
    assert single.dead == batched.dead == []
    assert batched.batches_failed == 0


async def test_each_step_is_heard_by_the_agency_that_had_the_case_then(
        services: BackingServices) -> None:
    """Reports filed ``unassigned`` and given their agency (``assign_agency``): the complaints
    here still show ``unassigned`` (their own consumer has not applied the step), yet the step
    and every one after it reach the given agency's liaisons, and no other agency's."""
    events = events_of(generate(40, seed=8, faults=False, assignments=0.5))
    await record_complaints(services.database_url, events)
    liaisons = {agency: uuid.UUID(int=n + 1) for n, agency in enumerate(AGENCIES)}
    async with Database.opened(services.database_url, pool_size=1) as database, \
            database.transaction() as session:
        for agency, subscription_id in liaisons.items():
            session.add(WebhookSubscription(
                id=subscription_id, owner=f"narahubung.{agency}", role=Role.liaison.value,
                agency_code=agency, url=f"https://hooks.example.org/{agency}",
                events=["complaint.status_changed"], secret="whsec_x",
                created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    async with Database.opened(services.database_url, pool_size=2) as database:
        applied = Applied(database, SUBSCRIPTION)
        await applied.in_batches(events, 64)
        assert applied.dead == []
        async with database.transaction() as session:
            made = {(subscription_id, event_id) for subscription_id, event_id
                    in await session.execute(text(
                        "SELECT subscription_id, event_id FROM intake.webhook_deliveries"))}

    steps = [e for e in events if e.type == CASE_TRANSITIONED]
    assignments = [e for e in steps if e.data["action"] == "assign_agency"]
    assert len(assignments) >= 5
    assert made == {(liaisons[e.data["agency"]], e.id) for e in steps}
