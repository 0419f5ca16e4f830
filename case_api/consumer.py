"""Opens a case for each case-opening ``complaint.received`` (consumer group ``aduan-case``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from case_api import service
from shared.bus import Subscription, UnknownEventType
from shared.events import (
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    COMPLAINTS_TOPIC,
    Event,
)
from shared.tables import CASE_EVENTS

CONSUMER = "aduan-case"


async def open_case(session: AsyncSession, event: Event) -> None:
    if event.type == COMPLAINT_ATTACHMENT_ADDED:
        return  # evidence changes nothing in a case's state
    if event.type != COMPLAINT_RECEIVED:
        raise UnknownEventType(event.type)
    await service.open_case(session, event.data)


SUBSCRIPTION = Subscription(CONSUMER, (COMPLAINTS_TOPIC,), open_case, CASE_EVENTS)
