"""Keeps each complaint's ``status`` and ``outcome`` following its case (group
``aduan-intake-status``)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository
from intake_api.case_changes import case_change
from intake_api.repository import CaseChange
from intake_api.webhooks.consumer import Handover, hand_over_attachments
from shared.bus import RetryLater, Subscription
from shared.events import CASES_TOPIC, Event
from shared.tables import INTAKE_EVENTS

CONSUMER = "aduan-intake-status"


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
    be on its own; a complaint not known yet holds the batch back (``RetryLater``). A case given
    its agency has the files added since handed over to that agency's liaisons."""
    changes = [(complaint_id_of(event), case_change(event)) for event in events]
    if not changes:
        return
    versions = await repository.case_versions(session, [c for c, _ in changes])
    for complaint_id, _ in changes:
        if complaint_id not in versions:
            raise RetryLater(f"complaint {complaint_id} is not known yet")
    final: dict[uuid.UUID, CaseChange] = {}
    handovers: list[Handover] = []
    for event, (complaint_id, change) in zip(events, changes, strict=True):
        if change.version <= versions[complaint_id]:
            continue
        versions[complaint_id] = change.version
        if change.reported_agency is not None:
            handovers.append(Handover(complaint_id, change.reported_agency[0], change.at,
                                      event.id))
        before = final.get(complaint_id)
        if before is not None:
            # What a change leaves unsaid (None) stays as the change before left it.
            change = dataclasses.replace(
                change, resolution=_known(change.resolution, before.resolution),
                transferred_to=_known(change.transferred_to, before.transferred_to),
                reported_agency=change.reported_agency or before.reported_agency)
        final[complaint_id] = change
    await repository.follow_cases(session, final)
    await hand_over_attachments(session, handovers)


SUBSCRIPTION = Subscription(CONSUMER, (CASES_TOPIC,), follow_case, INTAKE_EVENTS,
                            batch_handler=follow_cases, patient=True)
