"""Turns events into deliveries (consumer group ``aduan-webhooks``, both topics).

The deliveries are written in the transaction that records the event as processed, so a crash
before the commit redoes them and one after it never repeats them.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository as complaints
from intake_api.attachments import added_event
from intake_api.models import Complaint
from intake_api.webhooks import repository
from intake_api.webhooks.events import (
    TRIGGERS,
    EventType,
    Trigger,
    agency_of,
    complaint_id_of,
)
from intake_api.webhooks.models import WebhookSubscription
from shared.auth import Role
from shared.bus import RetryLater, Subscription
from shared.events import CASES_TOPIC, COMPLAINT_ATTACHMENT_ADDED, COMPLAINTS_TOPIC, Event
from shared.tables import INTAKE_EVENTS
from shared.vocabulary import utc_text

CONSUMER = "aduan-webhooks"
ATTACHMENT_ADDED = EventType.attachment_added.value


async def create_deliveries(session: AsyncSession, event: Event) -> None:
    await create_batch_deliveries(session, [event])


async def create_batch_deliveries(session: AsyncSession, events: Sequence[Event]) -> None:
    """The deliveries of a batch: its complaints read in one query, their listeners in another,
    the deliveries written a few hundred to a statement. A complaint not known yet holds the
    batch back (``RetryLater``)."""
    heard: list[tuple[Event, uuid.UUID, tuple[Trigger, ...]]] = []
    for event in events:
        triggers = TRIGGERS.get(event.type)
        if not triggers:
            continue  # events no webhook carries (case.opened, ...) are passed over
        try:
            heard.append((event, uuid.UUID(complaint_id_of(event)), triggers))
        except ValueError:
            continue
    if not heard:
        return
    types = {trigger.webhook_type.value for _, _, triggers in heard for trigger in triggers}
    if not await repository.anyone_listening(session, types):
        return  # nothing to deliver, whether or not the complaints are known here
    known = {c.id: c for c in await complaints.get_many(session, [c for _, c, _ in heard])}
    for _, complaint_id, _ in heard:
        if complaint_id not in known:
            raise RetryLater(f"complaint {complaint_id} is not known yet")
    # Each event is heard by the agency it names (the one that had the case then), not the
    # one stored with the complaint: ``assign_agency`` names the agency it gives the case, which
    # the complaint here shows only once its own consumer has applied the step.
    audience = await repository.listeners(
        session, {c.submitted_by for c in known.values()},
        {agency_of(event, known[complaint_id]) for event, complaint_id, _ in heard}, types)
    now = datetime.now(UTC)
    deliveries: list[dict[str, Any]] = []
    for n, (event, complaint_id, triggers) in enumerate(heard):
        complaint = known[complaint_id]
        listening = audience.of(complaint, agency_of(event, complaint))
        # A microsecond apart, the deliveries fall due and are listed in the events' order,
        # as when each event had a transaction (and a moment) of its own.
        at = now + timedelta(microseconds=n)
        for trigger in triggers:
            for subscription in listening:
                if trigger.webhook_type.value not in subscription.events:
                    continue
                delivery = _delivery(trigger, event, complaint, subscription, at)
                if delivery is not None:
                    deliveries.append(delivery)
    await repository.add_deliveries(session, deliveries)


def _delivery(trigger: Trigger, event: Event, complaint: Complaint,
              subscription: WebhookSubscription, at: datetime) -> dict[str, Any] | None:
    data = trigger.render(event, complaint, Role(subscription.role))
    if data is None:
        return None
    webhook_type = trigger.webhook_type.value
    body = {"type": webhook_type, "timestamp": utc_text(event.time), "data": data}
    return {
        "id": uuid.uuid4(), "subscription_id": subscription.id,
        "event_id": event.id, "event_type": webhook_type,
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        "status": "pending", "attempts": 0, "next_attempt_at": at,
        "retrying_since": at, "created_at": at,
    }


class Handover(NamedTuple):
    """A case given its agency (``assign_agency``) at ``at``, as the step's event says."""

    complaint_id: uuid.UUID
    agency: str
    at: datetime
    event_id: str


async def hand_over_attachments(session: AsyncSession, handovers: Sequence[Handover]) -> None:
    """Tells the liaisons of each case's new agency of the files added to it since it was
    given, when this service applies the step (called by the consumer that does).

    An attachment's event names the agency the complaint showed here when the file was added,
    and its deliveries go to that agency's liaisons. A file added after the case service gave
    the case its agency, but before the step was applied here, names the agency before
    (``unassigned``): its new agency's liaisons hear of it now. The step is applied under the
    complaint's row lock, which every upload takes too: the files read here are exactly those
    whose events name the agency before, and every later one names the new one. Each such
    delivery's event id is made from the step's and the file's, so a redone step makes no
    second one."""
    if not handovers or not await repository.anyone_listening(session, {ATTACHMENT_ADDED}):
        return
    steps = {h.complaint_id: h for h in handovers}  # one assignment per case: its last
    files = await complaints.attachments_since(session, {c: h.at for c, h in steps.items()})
    if not files:
        return
    known = {c.id: c for c in await complaints.get_many(session, list(steps))}
    audience = await repository.listeners(session, (), {h.agency for h in steps.values()},
                                          {ATTACHMENT_ADDED})
    (trigger,) = TRIGGERS[COMPLAINT_ATTACHMENT_ADDED]
    now = datetime.now(UTC)
    deliveries = []
    for n, attachment in enumerate(files):
        step = steps[attachment.complaint_id]
        complaint = known[attachment.complaint_id]
        event = dataclasses.replace(
            added_event(complaint, attachment),
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{step.event_id}/{attachment.id}")))
        for subscription in audience.liaisons.get(step.agency, ()):
            if ATTACHMENT_ADDED not in subscription.events:
                continue
            delivery = _delivery(trigger, event, complaint, subscription,
                                 now + timedelta(microseconds=n))
            if delivery is not None:
                deliveries.append(delivery)
    await repository.add_deliveries(session, deliveries)


SUBSCRIPTION = Subscription(CONSUMER, (COMPLAINTS_TOPIC, CASES_TOPIC), create_deliveries,
                            INTAKE_EVENTS, batch_handler=create_batch_deliveries,
                            patient=True)
