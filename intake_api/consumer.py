"""Keeps each complaint's ``status`` following its case (consumer group ``aduan-intake-status``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository
from shared.bus import RetryLater, Subscription, UnknownEventType
from shared.events import CASE_OPENED, CASE_TRANSITIONED, CASES_TOPIC, Event
from shared.tables import INTAKE_EVENTS

CONSUMER = "aduan-intake-status"


async def follow_case(session: AsyncSession, event: Event) -> None:
    if event.type == CASE_OPENED:
        status, version = event.data["status"], int(event.data.get("version", 1))
    elif event.type == CASE_TRANSITIONED:
        status, version = event.data["to_status"], int(event.data["version"])
    else:
        raise UnknownEventType(event.type)
    complaint_id = uuid.UUID(str(event.data.get("case_id") or event.subject))
    if await repository.get(session, complaint_id) is None:
        raise RetryLater(f"complaint {complaint_id} is not known yet")
    await repository.follow_case(session, complaint_id, status, version)


SUBSCRIPTION = Subscription(CONSUMER, (CASES_TOPIC,), follow_case, INTAKE_EVENTS)
