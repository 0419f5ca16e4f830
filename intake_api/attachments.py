"""Evidence on a complaint: who may add and read it, at most 20 per complaint, one event each."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import repository
from intake_api.models import Attachment, Complaint
from intake_api.schemas import AttachmentAdded, AttachmentOut
from intake_api.service import SOURCE
from intake_api.storage import AttachmentStore
from intake_api.upload import Upload
from shared import outbox
from shared.auth import Actor, Role
from shared.events import COMPLAINT_ATTACHMENT_ADDED, COMPLAINTS_TOPIC, Event, new_event
from shared.problems import Problem, not_found
from shared.tables import INTAKE_EVENTS
from shared.vocabulary import CASE_OPENING_KINDS, Kind

MAX_PER_COMPLAINT = 20


def _may_see(actor: Actor, complaint: Complaint) -> bool:
    if actor.role is Role.partner:
        return complaint.submitted_by == actor.name
    if actor.role is Role.liaison:
        # A liaison answers for its agency's cases; a complaint that opens no case has none.
        return (complaint.reported_agency_code == actor.agency_code
                and Kind(complaint.kind) in CASE_OPENING_KINDS)
    return actor.is_staff


def _full(count: int) -> Problem:
    return Problem(409, f"A complaint may have at most {MAX_PER_COMPLAINT} attachments; "
                        f"this one has {count}.")


async def readable_complaint(session: AsyncSession, actor: Actor,
                             complaint_id: uuid.UUID) -> Complaint:
    complaint = await repository.get(session, complaint_id)
    if complaint is None or not _may_see(actor, complaint):
        raise not_found("complaint")
    return complaint


async def check_room(session: AsyncSession, actor: Actor, complaint_id: uuid.UUID) -> None:
    """Refuses an upload before its body is read: unknown complaint, or no room left."""
    await readable_complaint(session, actor, complaint_id)
    count = await repository.count_attachments(session, complaint_id)
    if count >= MAX_PER_COMPLAINT:
        raise _full(count)


def to_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(
        id=attachment.id, filename=attachment.filename, content_type=attachment.content_type,
        size=attachment.size, sha256=attachment.sha256, confidential=attachment.confidential,
        uploaded_at=attachment.uploaded_at, uploaded_by=attachment.uploaded_by,
    )


async def add(session: AsyncSession, store: AttachmentStore, actor: Actor,
              complaint_id: uuid.UUID, upload: Upload, *, now: datetime) -> AttachmentOut:
    complaint = await repository.get_for_update(session, complaint_id)
    if complaint is None or not _may_see(actor, complaint):
        raise not_found("complaint")
    # Counted under the complaint's row lock, so two uploads racing for the last place
    # cannot both take it.
    count = await repository.count_attachments(session, complaint_id)
    if count >= MAX_PER_COMPLAINT:
        raise _full(count)
    attachment = Attachment(
        id=uuid.uuid4(), complaint_id=complaint_id, filename=upload.filename,
        content_type=upload.content_type, size=upload.size, sha256=upload.sha256,
        confidential=upload.confidential, uploaded_at=now, uploaded_by=actor.name,
    )
    session.add(attachment)
    await session.flush()
    await store.save(session, attachment.id, upload.content)
    event = added_event(complaint, attachment)
    await outbox.append(session, INTAKE_EVENTS, COMPLAINTS_TOPIC, event)
    return to_out(attachment)


def added_event(complaint: Complaint, attachment: Attachment) -> Event:
    """``complaint.attachment_added``; the agency it names is the complaint's as this service
    knows it when the file is added (under the complaint's row lock)."""
    data = AttachmentAdded(
        complaint_id=complaint.id, tracking_number=complaint.tracking_number,
        attachment_id=attachment.id, filename=attachment.filename,
        content_type=attachment.content_type, size=attachment.size, sha256=attachment.sha256,
        confidential=attachment.confidential, uploaded_at=attachment.uploaded_at,
        uploaded_by=attachment.uploaded_by, submitted_by=complaint.submitted_by,
        reported_agency_code=complaint.reported_agency_code,
    )
    return new_event(COMPLAINT_ATTACHMENT_ADDED, source=SOURCE, subject=str(complaint.id),
                     data=data.model_dump(mode="json"), time=attachment.uploaded_at)


async def visible(session: AsyncSession, actor: Actor, complaint_id: uuid.UUID, *,
                  after_seq: int | None, limit: int) -> Sequence[Attachment]:
    await readable_complaint(session, actor, complaint_id)
    return await repository.attachments(session, complaint_id,
                                        include_confidential=actor.role is not Role.liaison,
                                        after_seq=after_seq, limit=limit)


async def one_visible(session: AsyncSession, actor: Actor, complaint_id: uuid.UUID,
                      attachment_id: uuid.UUID) -> Attachment:
    await readable_complaint(session, actor, complaint_id)
    attachment = await repository.get_attachment(session, complaint_id, attachment_id)
    if attachment is None or (attachment.confidential and actor.role is Role.liaison):
        raise not_found("attachment")
    return attachment
