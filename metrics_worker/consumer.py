"""Projects complaint and case events into the metrics read model (group ``aduan-metrics``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker.models import CaseFact, Contact, TransitionFact
from shared.bus import RetryLater, Subscription, UnknownEventType
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    CASES_TOPIC,
    COMPLAINT_RECEIVED,
    COMPLAINTS_TOPIC,
    Event,
)
from shared.tables import METRICS_EVENTS

CONSUMER = "aduan-metrics"
EXAMINATION_STATES = {"in_examination", "awaiting_agency", "agency_responded",
                      "corrective_action"}


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def normalize_place(place: str | None) -> str | None:
    if place is None or not place.strip():
        return None
    return " ".join(place.split()).casefold()


async def record_contact(session: AsyncSession, data: dict[str, Any]) -> None:
    location = data.get("location") or {}
    place = normalize_place(location.get("place")) if data["channel"] == "on_the_spot" else None
    await session.execute(pg_insert(Contact).values(
        complaint_id=uuid.UUID(data["id"]), kind=data["kind"], channel=data["channel"],
        substance=data["substance"], agency=data["reported_agency"]["code"],
        received_at=datetime.fromisoformat(data["received_at"]), place=place,
    ).on_conflict_do_nothing())


async def record_opened(session: AsyncSession, data: dict[str, Any]) -> None:
    await session.execute(pg_insert(CaseFact).values(
        case_id=uuid.UUID(data["case_id"]), kind=data["kind"], channel=data["channel"],
        substance=data["substance"], agency=data["agency"],
        received_at=datetime.fromisoformat(data["received_at"]),
        opened_status=data["status"], status=data["status"], version=int(data.get("version", 1)),
        examination_at=None,
    ).on_conflict_do_nothing())


async def record_transition(session: AsyncSession, data: dict[str, Any]) -> None:
    case_id = uuid.UUID(data["case_id"])
    version = int(data["version"])
    case = (await session.execute(
        select(CaseFact).where(CaseFact.case_id == case_id).with_for_update()
    )).scalar_one_or_none()
    if case is None:
        raise RetryLater(f"case {case_id} is not known yet")
    if version <= case.version:
        return  # applied already under another event id: nothing to do
    if version != case.version + 1:
        raise RetryLater(f"case {case_id} is at version {case.version}, event is {version}")
    at = datetime.fromisoformat(data["at"])
    session.add(TransitionFact(
        case_id=case_id, version=version, action=data["action"],
        from_status=data["from_status"], to_status=data["to_status"], at=at,
        agency=data.get("agency") or case.agency, reason=data.get("reason"),
        closure_stage=data.get("closure_stage"), due_at=_time(data.get("due_at")),
        resolution=data.get("resolution"),
    ))
    case.version = version
    case.status = data["to_status"]
    if data["action"] == "register" and case.registered_at is None:
        case.registered_at = at
    if data["to_status"] in EXAMINATION_STATES and case.examination_at is None:
        case.examination_at = at
    if data["to_status"] == "closed":
        case.closed_at = at
        case.closure_stage = data.get("closure_stage")
        case.closure_reason = data.get("reason")


async def project(session: AsyncSession, event: Event) -> None:
    if event.type == COMPLAINT_RECEIVED:
        await record_contact(session, event.data)
    elif event.type == CASE_OPENED:
        await record_opened(session, event.data)
    elif event.type == CASE_TRANSITIONED:
        await record_transition(session, event.data)
    else:
        raise UnknownEventType(event.type)


SUBSCRIPTION = Subscription(CONSUMER, (COMPLAINTS_TOPIC, CASES_TOPIC), project, METRICS_EVENTS)
