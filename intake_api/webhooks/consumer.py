"""Turns events into deliveries (consumer group ``aduan-webhooks``, both topics).

The deliveries are written in the transaction that records the event as processed, so a crash
before the commit redoes them and one after it never repeats them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository as complaints
from intake_api.webhooks import repository
from intake_api.webhooks.events import TRIGGERS, complaint_id_of
from shared.auth import Role
from shared.bus import RetryLater, Subscription
from shared.events import CASES_TOPIC, COMPLAINTS_TOPIC, Event
from shared.tables import INTAKE_EVENTS
from shared.vocabulary import CASE_OPENING_KINDS, Kind, utc_text

CONSUMER = "aduan-webhooks"


async def create_deliveries(session: AsyncSession, event: Event) -> None:
    triggers = TRIGGERS.get(event.type)
    if not triggers:
        return  # events no webhook carries (case.opened, ...) are passed over
    try:
        complaint_id = uuid.UUID(complaint_id_of(event))
    except ValueError:
        return
    complaint = await complaints.get(session, complaint_id)
    if complaint is None:
        raise RetryLater(f"complaint {complaint_id} is not known yet")
    opens_case = Kind(complaint.kind) in CASE_OPENING_KINDS
    now = datetime.now(UTC)
    for trigger in triggers:
        for subscription in await repository.listeners(session, trigger.webhook_type.value,
                                                       complaint, opens_case=opens_case):
            data = trigger.render(event, complaint, Role(subscription.role))
            if data is None:
                continue
            body = {"type": trigger.webhook_type.value, "timestamp": utc_text(event.time),
                    "data": data}
            await repository.add_delivery(session, {
                "id": uuid.uuid4(), "subscription_id": subscription.id, "event_id": event.id,
                "event_type": trigger.webhook_type.value,
                "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                "status": "pending", "attempts": 0, "next_attempt_at": now,
                "retrying_since": now, "created_at": now,
            })


SUBSCRIPTION = Subscription(CONSUMER, (COMPLAINTS_TOPIC, CASES_TOPIC), create_deliveries,
                            INTAKE_EVENTS)
