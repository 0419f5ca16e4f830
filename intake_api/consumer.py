"""Keeps each complaint's ``status`` and ``outcome`` following its case (group
``aduan-intake-status``)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
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
        reported_agency=_agency(data.get("reported_agency")),
    )


def _agency(value: object) -> tuple[str, str] | None:
    """The agency an ``assign_agency`` step names (code, name); None on every other step."""
    if not isinstance(value, dict):
        return None
    return str(value["code"]), str(value["name"])


def _known(value: str | None, before: str | None) -> str | None:
    return before if value is None else value


def complaint_id_of(event: Event) -> uuid.UUID:
    return uuid.UUID(str(event.data.get("case_id") or event.subject))


async def follow_case(session: AsyncSession, event: Event) -> None:
    await follow_cases(session, [event])


async def follow_cases(session: AsyncSession, events: Sequence[Event]) -> None:
    """The case events of a batch in two statements: the complaints' case versions read (and
    locked), each complaint's changes folded in order into the one its row ends with, written
    in one update. A change older than what the complaint shows is passed over, as it would
    be on its own; a complaint not known yet holds the batch back (``RetryLater``)."""
    changes = [(complaint_id_of(event), case_change(event)) for event in events]
    if not changes:
        return
    versions = await repository.case_versions(session, [c for c, _ in changes])
    for complaint_id, _ in changes:
        if complaint_id not in versions:
            raise RetryLater(f"complaint {complaint_id} is not known yet")
    final: dict[uuid.UUID, CaseChange] = {}
    for complaint_id, change in changes:
        if change.version <= versions[complaint_id]:
            continue
        versions[complaint_id] = change.version
        before = final.get(complaint_id)
        if before is not None:
            # What a change leaves unsaid (None) stays as the change before left it.
            change = dataclasses.replace(
                change, resolution=_known(change.resolution, before.resolution),
                transferred_to=_known(change.transferred_to, before.transferred_to),
                reported_agency=change.reported_agency or before.reported_agency)
        final[complaint_id] = change
    await repository.follow_cases(session, final)


SUBSCRIPTION = Subscription(CONSUMER, (CASES_TOPIC,), follow_case, INTAKE_EVENTS,
                            batch_handler=follow_cases, patient=True)
