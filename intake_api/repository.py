"""SQL of the intake service."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from intake_api.models import Attachment, Complaint, IdempotencyKey, Open311Request
from shared import outbox
from shared.db import on_driver

# The only unique key a caller chooses is (submitter, external reference): a second post of
# one reference inserts nothing, and the caller is told which complaint has it.
COMPLAINT_COLUMNS = (
    "id", "tracking_number", "access_code_hash", "kind", "channel", "substance", "reporter",
    "reported_agency_code", "reported_agency_name", "summary", "description", "incident_date",
    "reported_to_agency_first", "location", "external_reference", "received_at", "submitted_by",
    "status")
# What the statement recording complaints makes itself, rather than read from what it is given.
_DRAWN = {
    "tracking_number": "number",
    "access_code_hash": "encode(sha256(convert_to(number || ':' || access_code, 'UTF8')), 'hex')",
}
_GIVEN_COLUMNS = (*(c for c in COMPLAINT_COLUMNS if c not in _DRAWN), "access_code")


# Complaints, their tracking numbers and their events in one statement, one round trip (a
# group of one or more, group_commit.py): no event without its complaint, no complaint without
# its event; on a connection outside a transaction it commits on its own. The rows go as two
# JSON arrays read as the tables' own row types, so no column's type is written twice.
#
# Each complaint draws the next number of its year's register (``intake.next_tracking_number``,
# a sequence: a number drawn is never drawn again, so numbers are unique, and increase with the
# time they were drawn; a complaint refused after its draw leaves a gap). Within the statement
# a year's numbers go to its complaints in the order they were given, as the sequence has no
# order of evaluation to promise. The number is salted into the access code's hash as
# ``access.hash_code`` does (SHA-256 of ``number:code``, hex), and written into the event's
# data, where the complaint's answer left it empty.
_RECORD_COMPLAINTS = f"""
    WITH given AS MATERIALIZED (
      SELECT c.*, y.year, g.complaint ->> 'access_code' AS access_code, g.ord,
             row_number() OVER (PARTITION BY y.year ORDER BY g.ord) AS rank
      FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS g (complaint, ord)
      JOIN unnest($3::integer[]) WITH ORDINALITY AS y (year, ord) USING (ord)
      CROSS JOIN LATERAL jsonb_populate_record(NULL::intake.complaints, g.complaint) AS c),
    drawn AS (
      SELECT year, number, row_number() OVER (PARTITION BY year ORDER BY number) AS rank
      FROM (SELECT year, intake.next_tracking_number(year) AS number FROM given) AS d),
    numbered AS (
      SELECT given.*, format('ADU-%s-%s', year, lpad(number::text,
                                                     greatest(length(number::text), 6), '0'))
                      AS number
      FROM given JOIN drawn USING (year, rank)),
    complaint AS (
      INSERT INTO intake.complaints ({', '.join(COMPLAINT_COLUMNS)})
      SELECT {', '.join(_DRAWN.get(c, c) for c in COMPLAINT_COLUMNS)}
      FROM numbered ORDER BY ord
      ON CONFLICT (submitted_by, external_reference) WHERE external_reference IS NOT NULL
      DO NOTHING RETURNING id, tracking_number),
    event AS (
      INSERT INTO intake.outbox ({outbox.COLUMNS})
      SELECT e.event_id, e.topic, e.key,
             jsonb_set(e.envelope, '{{data,tracking_number}}', to_jsonb(c.tracking_number)),
             e.trace_context
      FROM jsonb_populate_recordset(NULL::intake.outbox, $2::jsonb) e
      JOIN complaint c ON c.id::text = e.key)
    SELECT id, tracking_number FROM complaint"""


async def record_complaints(driver: asyncpg.Connection, years: Sequence[int],
                            complaints: Sequence[dict[str, Any]],
                            events: Sequence[outbox.OutboxRow]) -> dict[uuid.UUID, str]:
    """Inserts complaint rows, each numbered in the register of its year in ``years`` and
    with its outbox row (whose key is the complaint's id), in one statement; returns the
    tracking numbers of those inserted (not those whose external reference was used).

    A complaint row carries its access code (normalised, or None) as ``access_code``, and no
    ``tracking_number`` or ``access_code_hash``: the statement draws the one and makes the
    other of it. Its event's data gets the number as ``tracking_number``."""
    rows = await driver.fetch(_RECORD_COMPLAINTS, _json_rows(complaints),
                              outbox.json_rows(events), list(years))
    return {row["id"]: row["tracking_number"] for row in rows}


async def count_complaints(driver: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> int:
    """How many of the complaints ``ids`` are recorded."""
    found: int = await driver.fetchval(
        "SELECT count(*) FROM intake.complaints WHERE id = ANY($1::uuid[])", list(ids))
    return found


def _json_rows(complaints: Sequence[dict[str, Any]]) -> str:
    # orjson writes ids, dates and times (with their offset) as the ISO 8601 text PostgreSQL
    # reads back, in a fraction of the time of json and a conversion of each value.
    return orjson.dumps([{c: row[c] for c in _GIVEN_COLUMNS} for row in complaints]).decode()


@dataclass(frozen=True)
class Holder:
    """The complaint that already has an external reference."""

    id: uuid.UUID
    tracking_number: str


async def holder_of_reference(driver: asyncpg.Connection, submitted_by: str,
                              reference: str) -> Holder | None:
    row = await driver.fetchrow(
        "SELECT id, tracking_number FROM intake.complaints "
        "WHERE submitted_by = $1 AND external_reference = $2", submitted_by, reference)
    return Holder(row["id"], row["tracking_number"]) if row is not None else None


async def get(session: AsyncSession, complaint_id: uuid.UUID) -> Complaint | None:
    return await session.get(Complaint, complaint_id)


async def get_many(session: AsyncSession,
                   complaint_ids: Sequence[uuid.UUID]) -> Sequence[Complaint]:
    query = select(Complaint).where(Complaint.id.in_(sorted(set(complaint_ids))))
    return (await session.execute(query)).scalars().all()


async def get_for_update(session: AsyncSession, complaint_id: uuid.UUID) -> Complaint | None:
    """The complaint, locked until the transaction ends (serialises its attachment uploads)."""
    query = select(Complaint).where(Complaint.id == complaint_id).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def page(session: AsyncSession, *, submitted_by: str | None, status: str | None,
               kind: str | None, before_seq: int | None, limit: int,
               tracking_number: str | None = None) -> Sequence[Complaint]:
    query = select(Complaint).order_by(Complaint.seq.desc()).limit(limit)
    if submitted_by is not None:
        query = query.where(Complaint.submitted_by == submitted_by)
    if status is not None:
        query = query.where(Complaint.status == status)
    if kind is not None:
        query = query.where(Complaint.kind == kind)
    if tracking_number is not None:
        query = query.where(Complaint.tracking_number == tracking_number)
    if before_seq is not None:
        query = query.where(Complaint.seq < before_seq)
    return (await session.execute(query)).scalars().all()


async def by_tracking_number(session: AsyncSession, tracking_number: str) -> Complaint | None:
    query = select(Complaint).where(Complaint.tracking_number == tracking_number)
    return (await session.execute(query)).scalar_one_or_none()


@dataclass(frozen=True)
class CaseChange:
    """What one case event says of the case; ``None`` resolution/transfer keep the known one."""

    status: str
    version: int
    at: datetime
    due_at: datetime | None = None
    closure_stage: str | None = None
    closure_reason: str | None = None
    resolution: str | None = None
    transferred_to: str | None = None
    closed_at: datetime | None = None
    reported_agency: tuple[str, str] | None = None  # (code, name), set by ``assign_agency``


async def case_versions(session: AsyncSession,
                        complaint_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The case version each known complaint follows, locked until the transaction ends (in one
    order, so two batches never wait on each other); a complaint not known yet is absent.

    Sent on the driver, as ``follow_cases``: both run for every batch of case events."""
    async with on_driver(session) as driver:
        rows = await driver.fetch(_CASE_VERSIONS_SQL, sorted(set(complaint_ids)))
    return {row[0]: int(row[1]) for row in rows}


_COMPLAINTS = Complaint.__table__.fullname  # type: ignore[attr-defined]
_CASE_VERSIONS_SQL = (f"SELECT id, case_version FROM {_COMPLAINTS} WHERE id = ANY($1::uuid[]) "
                      "ORDER BY id FOR NO KEY UPDATE")
_FOLLOW_CASES_SQL = (
    f"UPDATE {_COMPLAINTS} AS c SET status = g.status, case_version = g.version, "
    "case_updated_at = g.at, due_at = g.due_at, closure_stage = g.closure_stage, "
    "closure_reason = g.closure_reason, resolution = coalesce(g.resolution, c.resolution), "
    "transferred_to = coalesce(g.transferred_to, c.transferred_to), closed_at = g.closed_at, "
    "reported_agency_code = coalesce(g.agency_code, c.reported_agency_code), "
    "reported_agency_name = coalesce(g.agency_name, c.reported_agency_name) "
    "FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[], "
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], "
    "$12::text[]) "
    "AS g(id, status, version, at, due_at, closure_stage, closure_reason, resolution, "
    "transferred_to, closed_at, agency_code, agency_name) "
    "WHERE c.id = g.id AND c.case_version < g.version")


async def follow_cases(session: AsyncSession, changes: dict[uuid.UUID, CaseChange]) -> None:
    """Takes each case's state from its change in one statement, unless a newer version was
    already applied; a ``None`` resolution, transfer or agency keeps the one known."""
    if not changes:
        return
    ids = sorted(changes)
    rows = [changes[complaint_id] for complaint_id in ids]
    async with on_driver(session) as driver:
        await driver.execute(
            _FOLLOW_CASES_SQL, ids, [c.status for c in rows], [c.version for c in rows],
            [c.at for c in rows], [c.due_at for c in rows], [c.closure_stage for c in rows],
            [c.closure_reason for c in rows], [c.resolution for c in rows],
            [c.transferred_to for c in rows], [c.closed_at for c in rows],
            [c.reported_agency[0] if c.reported_agency else None for c in rows],
            [c.reported_agency[1] if c.reported_agency else None for c in rows])


async def claim_idempotency_key(session: AsyncSession, caller: str, key: str,
                                request_hash: str, now: datetime) -> bool:
    result = await session.execute(
        pg_insert(IdempotencyKey)
        .values(caller=caller, key=key, request_hash=request_hash, created_at=now)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    return result.first() is not None


async def get_idempotency_key(session: AsyncSession, caller: str,
                              key: str) -> IdempotencyKey | None:
    return await session.get(IdempotencyKey, (caller, key))


async def count_attachments(session: AsyncSession, complaint_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(Attachment).where(
        Attachment.complaint_id == complaint_id)
    return int((await session.execute(query)).scalar_one())


async def attachments(session: AsyncSession, complaint_id: uuid.UUID, *,
                      include_confidential: bool, after_seq: int | None,
                      limit: int) -> Sequence[Attachment]:
    """One page of a complaint's attachments, oldest first."""
    query = select(Attachment).where(Attachment.complaint_id == complaint_id)
    if not include_confidential:
        query = query.where(Attachment.confidential.is_(False))
    if after_seq is not None:
        query = query.where(Attachment.seq > after_seq)
    query = query.order_by(Attachment.seq).limit(limit)
    return (await session.execute(query)).scalars().all()


async def attachments_since(session: AsyncSession,
                            since: Mapping[uuid.UUID, datetime]) -> Sequence[Attachment]:
    """The attachments of each complaint in ``since`` added at or after its instant, oldest
    first."""
    if not since:
        return ()
    query = select(Attachment).where(Attachment.complaint_id.in_(sorted(since))) \
        .order_by(Attachment.seq)
    return [a for a in (await session.execute(query)).scalars()
            if a.uploaded_at >= since[a.complaint_id]]


async def get_attachment(session: AsyncSession, complaint_id: uuid.UUID,
                         attachment_id: uuid.UUID) -> Attachment | None:
    query = select(Attachment).where(Attachment.id == attachment_id,
                                     Attachment.complaint_id == complaint_id)
    return (await session.execute(query)).scalar_one_or_none()


async def open311_requests(
    session: AsyncSession, *, submitted_by: str | None, kinds: Sequence[str],
    tracking_numbers: Sequence[str], substances: Sequence[str], start: datetime | None,
    end: datetime | None, closed: bool | None, limit: int,
) -> Sequence[tuple[Complaint, Open311Request | None]]:
    """Complaints with their Open311 details (when a civic client sent them), newest first."""
    query = (
        select(Complaint, Open311Request)
        .outerjoin(Open311Request, Open311Request.complaint_id == Complaint.id)
        .where(Complaint.kind.in_(kinds))
        .order_by(Complaint.seq.desc())
        .limit(limit)
    )
    if submitted_by is not None:
        query = query.where(Complaint.submitted_by == submitted_by)
    if tracking_numbers:
        query = query.where(Complaint.tracking_number.in_(tracking_numbers))
    if substances:
        query = query.where(Complaint.substance.in_(substances))
    if start is not None:
        query = query.where(Complaint.received_at >= start)
    if end is not None:
        query = query.where(Complaint.received_at <= end)
    if closed is not None:
        query = query.where((Complaint.status == "closed") if closed
                            else (Complaint.status != "closed"))
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


# How many of an agency's complaints ``agency_name`` looks through at most: reports filed under
# the code alone (name = code) never name it, and there may be any number of them.
AGENCY_NAME_LOOKS = 200


async def agency_name(session: AsyncSession, code: str) -> str | None:
    """A name an earlier complaint gave the agency ``code``, or None when none of the first
    ``AGENCY_NAME_LOOKS`` its index finds gave one. The intake reads only its own tables (the
    case service's register of agencies is its own), so this is a name a partner filed the
    agency under."""
    recent = (select(Complaint.reported_agency_name.label("name"))
              .where(Complaint.reported_agency_code == code)
              .limit(AGENCY_NAME_LOOKS).subquery())
    name = await session.scalar(select(recent.c.name).where(recent.c.name != code).limit(1))
    return None if name is None else str(name)
