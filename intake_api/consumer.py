"""Keeps each complaint's ``status`` and ``outcome`` following its case (group
``aduan-intake-status``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository
from intake_api.repository import CaseChange
from shared.bus import RetryLater, Subscription, UnknownEventType
from shared.events import CASE_OPENED, CASE_TRANSITIONED, CASES_TOPIC, Event
from shared.tables import INTAKE_EVENTS

CONSUMER = "aduan-intake-status"


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def case_change(event: Event) -> CaseChange:
    data = event.data
    if event.type == CASE_OPENED:
        return CaseChange(status=data["status"], version=int(data.get("version", 1)),
                          at=_time(data.get("received_at")) or event.time)
    if event.type != CASE_TRANSITIONED:
        raise UnknownEventType(event.type)
    at = _time(data.get("at")) or event.time
    closed = data["to_status"] == "closed"
    return CaseChange(
        status=data["to_status"], version=int(data["version"]), at=at,
        due_at=_time(data.get("due_at")),
        closure_stage=data.get("closure_stage") if closed else None,
        closure_reason=data.get("reason") if closed else None,
        resolution=data.get("resolution"),
        transferred_to=data.get("transferred_to"),
        closed_at=at if closed else None,
    )


async def follow_case(session: AsyncSession, event: Event) -> None:
    change = case_change(event)
    complaint_id = uuid.UUID(str(event.data.get("case_id") or event.subject))
    if await repository.get(session, complaint_id) is None:
        raise RetryLater(f"complaint {complaint_id} is not known yet")
    await repository.follow_case(session, complaint_id, change)


SUBSCRIPTION = Subscription(CONSUMER, (CASES_TOPIC,), follow_case, INTAKE_EVENTS)
