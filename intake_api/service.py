"""Recording complaints: the intake rules of API.md."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NoReturn
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from intake_api import access, repository
from intake_api.group_commit import GroupCommit, Write, Written
from intake_api.models import Complaint
from intake_api.schemas import (
    ComplaintCreate,
    ComplaintCreated,
    ComplaintOut,
    Location,
    Outcome,
    ReportedAgency,
    Reporter,
)
from shared import outbox, tracing
from shared.auth import Actor, Role
from shared.db import Database, announce_after_commit, on_driver
from shared.events import COMPLAINT_RECEIVED, COMPLAINTS_TOPIC, encoded_envelope
from shared.problems import Problem, invalid, not_found
from shared.tables import INTAKE_EVENTS
from shared.text import is_blank
from shared.vocabulary import CASE_OPENING_KINDS, RECORDED, Channel, Kind, opening_status

SOURCE = "/aduan/intake"
# The complainant's secret is in the answer alone, never in the event.
_UNPUBLISHED = {"access_code"}
# The Ombudsman of the Republic of Indonesia was established in 2000: no record is older.
EARLIEST_RECORD = datetime(2000, 1, 1, tzinfo=UTC)


def check_rules(payload: ComplaintCreate, actor: Actor, *, now: datetime, zone: ZoneInfo) -> None:
    if payload.kind is Kind.own_initiative and not actor.is_staff:
        raise Problem(403, "own_initiative complaints are created by assistants and admins only.")
    if payload.received_at is not None:
        if actor.role is not Role.admin:
            raise invalid("/received_at", "received_at may be set only by an admin importing "
                                          "historical records")
        if payload.received_at > now:
            raise invalid("/received_at", "received_at may not be in the future")
        if payload.received_at < EARLIEST_RECORD:
            raise invalid("/received_at", "received_at may not be before 2000, when the "
                                          "Ombudsman was founded")
    if payload.kind is not Kind.own_initiative and (payload.reporter is None
                                                     or payload.reporter.name is None):
        raise invalid("/reporter/name", "reporter.name is required unless kind is own_initiative")
    if payload.channel is Channel.on_the_spot and (payload.location is None
                                                    or is_blank(payload.location.place or "")):
        raise invalid("/location/place", "location.place is required for the on_the_spot channel")
    if payload.incident_date is not None and payload.incident_date > now.astimezone(zone).date():
        raise invalid("/incident_date", "incident_date may not be in the future")
    if payload.incident_date is not None and payload.incident_date.year < 1900:
        raise invalid("/incident_date", "incident_date may not be before 1900")


def outcome_of(complaint: Complaint) -> Outcome | None:
    if Kind(complaint.kind) not in CASE_OPENING_KINDS:
        return None
    return Outcome(
        status=complaint.status,
        updated_at=complaint.case_updated_at or complaint.received_at,
        due_at=complaint.due_at,
        closure_stage=complaint.closure_stage,
        closure_reason=complaint.closure_reason,
        resolution=complaint.resolution,
        transferred_to=complaint.transferred_to,
        closed_at=complaint.closed_at,
    )


def to_out(complaint: Complaint) -> ComplaintOut:
    return ComplaintOut(
        id=complaint.id,
        tracking_number=complaint.tracking_number,
        kind=Kind(complaint.kind),
        channel=Channel(complaint.channel),
        substance=complaint.substance,
        reporter=Reporter.model_validate(complaint.reporter) if complaint.reporter else None,
        reported_agency=ReportedAgency(code=complaint.reported_agency_code,
                                       name=complaint.reported_agency_name),
        summary=complaint.summary,
        description=complaint.description,
        incident_date=complaint.incident_date,
        reported_to_agency_first=complaint.reported_to_agency_first,
        location=Location.model_validate(complaint.location) if complaint.location else None,
        external_reference=complaint.external_reference,
        status=complaint.status,
        received_at=complaint.received_at,
        submitted_by=complaint.submitted_by,
        outcome=outcome_of(complaint),
    )


def _duplicate(reference: str, holder: repository.Holder) -> Problem:
    return Problem(409, f"external_reference {reference!r} was already "
                        f"submitted as {holder.tracking_number}.",
                   complaint_id=str(holder.id))


def _created_out(complaint_id: uuid.UUID, tracking_number: str, payload: ComplaintCreate,
                 *, actor: Actor, received_at: datetime, status: str,
                 code: str) -> ComplaintCreated:
    """The new complaint as answered (and, without its access code, published), from what was
    just stored (already validated: built without validating it again)."""
    kind = payload.kind
    outcome = None
    if kind in CASE_OPENING_KINDS:
        outcome = Outcome.model_construct(
            status=status, updated_at=received_at, due_at=None, closure_stage=None,
            closure_reason=None, resolution=None, transferred_to=None, closed_at=None)
    return ComplaintCreated.model_construct(
        id=complaint_id, tracking_number=tracking_number, kind=kind, channel=payload.channel,
        substance=payload.substance, reporter=payload.reporter,
        reported_agency=payload.reported_agency, summary=payload.summary,
        description=payload.description, incident_date=payload.incident_date,
        reported_to_agency_first=payload.reported_to_agency_first, location=payload.location,
        external_reference=payload.external_reference, status=status,
        received_at=received_at, submitted_by=actor.name, outcome=outcome, access_code=code)


async def submit(session: AsyncSession, actor: Actor, payload: ComplaintCreate, *,
                 now: datetime, zone: ZoneInfo) -> ComplaintCreated:
    """``record`` in ``session``'s transaction (a request that keeps its answer under an
    idempotency key, an Open311 request), announced to readers once it commits."""
    async with on_driver(session) as driver:
        created = await record(driver, actor, payload, now=now, zone=zone)
    announce_after_commit(session, INTAKE_EVENTS.schema)
    return created


async def record(driver: asyncpg.Connection, actor: Actor, payload: ComplaintCreate, *,
                 now: datetime, zone: ZoneInfo) -> ComplaintCreated:
    """Records the complaint and its event alone; the answer alone carries the new access code.

    One statement, that of a group of one: the year's next number, the complaint row and its
    outbox row. A duplicate ``external_reference`` that slips past the first look-up (two posts
    at once) is caught by the insert's ``ON CONFLICT``.
    """
    check_rules(payload, actor, now=now, zone=zone)
    reference = payload.external_reference
    if reference is not None:
        holder = await repository.holder_of_reference(driver, actor.name, reference)
        if holder is not None:
            raise _duplicate(reference, holder)
    received_at = payload.received_at or now
    code = access.new_code()
    write = _writer(actor, payload, code=code, received_at=received_at)
    values, event, created = write(tracing.current_carrier())
    numbers = await repository.record_complaints(
        driver, [received_at.astimezone(zone).year], [values], [event])
    if values["id"] not in numbers:
        await _refuse_duplicate(driver, actor, payload)
    created.tracking_number = numbers[values["id"]]
    return created


async def record_together(group: GroupCommit, database: Database, actor: Actor,
                          payload: ComplaintCreate, *, now: datetime,
                          zone: ZoneInfo) -> ComplaintCreated:
    """``record``, with the complaints posted at the same time (``group_commit``): the same
    rules and answers, committed when its group is."""
    check_rules(payload, actor, now=now, zone=zone)
    reference = payload.external_reference
    if reference is not None:  # a partner's retry draws no number it would not use
        async with database.autocommit() as driver:
            holder = await repository.holder_of_reference(driver, actor.name, reference)
        if holder is not None:
            raise _duplicate(reference, holder)
    received_at = payload.received_at or now
    code = access.new_code()
    write = _writer(actor, payload, code=code, received_at=received_at)
    created, number = await group.record(received_at.astimezone(zone).year, write)
    if number is None:
        async with database.autocommit() as driver:
            await _refuse_duplicate(driver, actor, payload)
    created.tracking_number = number
    return created


async def _refuse_duplicate(driver: asyncpg.Connection, actor: Actor,
                            payload: ComplaintCreate) -> NoReturn:
    reference = payload.external_reference
    assert reference is not None  # the only unique key a caller chooses
    holder = await repository.holder_of_reference(driver, actor.name, reference)
    if holder is None:  # pragma: no cover - the conflicting row cannot vanish
        raise Problem(409, "The complaint conflicts with one being recorded; send it again.")
    raise _duplicate(reference, holder)


def _writer(actor: Actor, payload: ComplaintCreate, *, code: str,
            received_at: datetime) -> Write:
    """The complaint's row, event and answer, but for its tracking number: the statement
    writing them draws it, and makes of it the code's hash and the event's number."""
    complaint_id = uuid.uuid4()
    subject = str(complaint_id)
    status = opening_status(payload.kind) or RECORDED
    # Serialised once each, by pydantic: the event's data (the answer without its access
    # code) straight to JSON text, and the complaint row's JSON columns as the same text.
    reporter = _json_text(payload.reporter)
    location = _json_text(payload.location)

    def write(carrier: Mapping[str, str] | None) -> Written:
        created = _created_out(complaint_id, "", payload, actor=actor,
                               received_at=received_at, status=status, code=code)
        event_id = str(uuid.uuid4())
        envelope = encoded_envelope(
            COMPLAINT_RECEIVED, event_id=event_id, source=SOURCE, subject=subject,
            time=received_at, data_json=created.model_dump_json(exclude=_UNPUBLISHED))
        values = {
            "id": complaint_id,
            "access_code": access.normalize(code),
            "kind": payload.kind.value,
            "channel": payload.channel.value,
            "substance": payload.substance.value,
            "reporter": reporter,
            "reported_agency_code": payload.reported_agency.code,
            "reported_agency_name": payload.reported_agency.name,
            "summary": payload.summary,
            "description": payload.description,
            "incident_date": payload.incident_date,
            "reported_to_agency_first": payload.reported_to_agency_first,
            "location": location,
            "external_reference": payload.external_reference,
            "received_at": received_at,
            "submitted_by": actor.name,
            "status": status,
        }
        event = outbox.encoded_row(event_id, COMPLAINTS_TOPIC, subject, envelope, carrier)
        return values, event, created

    return write


def _json_text(part: BaseModel | None) -> orjson.Fragment | None:
    """A part of the complaint as the JSON its event's data holds, for a jsonb column (the
    complaint row goes to the database as orjson's JSON, ``repository.record_complaints``)."""
    return orjson.Fragment(part.model_dump_json()) if part is not None else None


async def visible_complaint(session: AsyncSession, actor: Actor,
                            complaint_id: uuid.UUID) -> Complaint:
    complaint = await repository.get(session, complaint_id)
    if complaint is None or (actor.role is Role.partner and complaint.submitted_by != actor.name):
        raise not_found("complaint")
    return complaint
