"""Opens a case for each case-opening ``complaint.received`` (consumer group ``aduan-case``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from case_api import service
from shared import tracing
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
    await open_cases(session, [event])


async def open_cases(session: AsyncSession, events: Sequence[Event]) -> None:
    """Opens the cases of the ``complaint.received`` among ``events`` in a few statements;
    each ``case.opened`` continues the trace of its complaint."""
    received = []
    for event in events:
        if event.type == COMPLAINT_ATTACHMENT_ADDED:
            continue  # evidence changes nothing in a case's state
        if event.type != COMPLAINT_RECEIVED:
            raise UnknownEventType(event.type)
        with tracing.continued(event.trace):
            received.append((event.data, tracing.current_carrier()))
    await service.open_cases(session, received)


SUBSCRIPTION = Subscription(CONSUMER, (COMPLAINTS_TOPIC,), open_case, CASE_EVENTS,
                            batch_handler=open_cases)
