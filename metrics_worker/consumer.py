"""Projects complaint and case events into the metrics read model (group ``aduan-metrics``)."""

from __future__ import annotations

import functools
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, cast, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from metrics_worker import counts, histograms
from metrics_worker.models import AssignmentFact, CaseFact, Contact, TransitionFact
from shared.bus import RetryLater, Subscription, UnknownEventType
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    CASES_TOPIC,
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    COMPLAINTS_TOPIC,
    Event,
)
from shared.tables import METRICS_EVENTS
from shared.text import is_blank
from shared.vocabulary import CASE_OPENING_KINDS, EXAMINATION_STATUSES, UNASSIGNED_AGENCY_CODE

CONSUMER = "aduan-metrics"
CASES: Table = CaseFact.__table__  # type: ignore[assignment]
CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
TRANSITIONS: Table = TransitionFact.__table__  # type: ignore[assignment]
ASSIGNMENTS: Table = AssignmentFact.__table__  # type: ignore[assignment]
# Thirteen parameters a transition, well within the 32,767 a statement may carry.
ROWS_PER_STATEMENT = 1000


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def normalize_place(place: str | None) -> str | None:
    """One spelling per place: "trimmed, case-insensitive" (METRICS.md), and also blind to
    Unicode's equivalent forms (NFKC), to invisible characters and to runs of whitespace."""
    if type(place) is str:
        return _normalized(place)
    return _normalize(place)


@functools.lru_cache(maxsize=4096)  # the same few places again and again in a rebuild
def _normalized(place: str) -> str | None:
    return _normalize(place)


def _normalize(place: str | None) -> str | None:
    if place is None or is_blank(place):
        return None
    visible = "".join(c for c in unicodedata.normalize("NFKC", place)
                      if unicodedata.category(c) != "Cf")
    return " ".join(visible.split()).casefold()


def contact_values(data: dict[str, Any]) -> dict[str, Any]:
    """The ``contacts`` row of a ``complaint.received`` event (live projection and rebuild)."""
    location = data.get("location") or {}
    place = normalize_place(location.get("place")) if data["channel"] == "on_the_spot" else None
    return {"complaint_id": uuid.UUID(data["id"]), "kind": data["kind"],
            "channel": data["channel"], "substance": data["substance"],
            "agency": data["reported_agency"]["code"],
            "received_at": datetime.fromisoformat(data["received_at"]), "place": place}


def opening_values(data: dict[str, Any]) -> dict[str, Any]:
    """The ``cases`` row of a ``case.opened`` event, before any transition (live projection
    and rebuild)."""
    return {"case_id": uuid.UUID(data["case_id"]), "kind": data["kind"],
            "channel": data["channel"], "substance": data["substance"],
            "agency": data["agency"], "received_at": datetime.fromisoformat(data["received_at"]),
            "opened_status": data["status"], "status": data["status"],
            "version": int(data.get("version", 1)), "examination_at": None}


async def record_contact(session: AsyncSession, data: dict[str, Any]) -> None:
    await record_contacts(session, [data])


# Executed with a list of rows: compiled once and sent as multi-row statements by SQLAlchemy
# (``insertmanyvalues``), where ``.values(rows)`` would compile a new statement for every batch.
_INSERT_CONTACTS = (pg_insert(CONTACTS).on_conflict_do_nothing()
                    .returning(CONTACTS.c.complaint_id))
_INSERT_OPENINGS = pg_insert(CASES).on_conflict_do_nothing().returning(CASES.c.case_id)


async def record_contacts(session: AsyncSession, contacts: Sequence[dict[str, Any]]) -> None:
    """The contacts of ``complaint.received`` events: one insert, then one addition to the
    counts for those not recorded before (a complaint under two event ids counts once)."""
    rows = [contact_values(data) for data in contacts]
    if not rows:
        return
    given = await _agencies_given(session, rows)
    new = set((await session.execute(_INSERT_CONTACTS, [
        {**row, "agency": given[row["complaint_id"]]} if row["complaint_id"] in given else row
        for row in rows])).scalars())
    increments: list[counts.Increment] = []
    decrements: list[counts.Increment] = []
    for row in rows:
        if row["complaint_id"] not in new:
            continue  # the same complaint under another event id: counted already
        new.discard(row["complaint_id"])
        at, place = row["received_at"], row["place"]
        increments += [(at, counts.CONTACTS, row["kind"]),
                       *((at, counts.CONTACTS_BY[g], row[g]) for g in _CONTACT_GROUPINGS)]
        if row["complaint_id"] in given:  # moved as ``_reassign_contacts`` moves it
            decrements.append((at, counts.CONTACTS_AGENCY, row["agency"]))
            increments.append((at, counts.CONTACTS_AGENCY, given[row["complaint_id"]]))
        if place is not None:
            increments.append((at, counts.ON_THE_SPOT_PLACE, place))
        if row["kind"] in CASE_OPENING_KINDS:
            increments += [(at, counts.RECEIVED_CHANNEL, row["channel"]),
                           (at, counts.RECEIVED_SUBSTANCE, row["substance"]),
                           (at, counts.RECEIVED_AGENCY, row["agency"])]
            if row["complaint_id"] in given:  # moved as ``_reassign_contacts`` moves it
                decrements.append((at, counts.RECEIVED_AGENCY, row["agency"]))
                increments.append((at, counts.RECEIVED_AGENCY, given[row["complaint_id"]]))
    await counts.add(session, increments, decrements)


_CONTACT_GROUPINGS = ("channel", "substance", "agency")


async def _agencies_given(session: AsyncSession,
                          rows: Sequence[dict[str, Any]]) -> dict[uuid.UUID, str]:
    """The agencies the cases of contacts filed under ``unassigned`` were given before the
    contact came (the cases' log is read apart from the complaints'), so that the contact
    ends as it would had it come first. An ``assign_agency`` applied meanwhile either is
    seen here or, waiting for this transaction, sees the contact (``_lock_cases``)."""
    waiting = sorted({row["complaint_id"] for row in rows
                      if row["agency"] == UNASSIGNED_AGENCY_CODE})
    if not waiting:
        return {}
    await _lock_cases(session, shared=waiting)
    return {case_id: agency for case_id, agency in await session.execute(
        select(CASES.c.case_id, CASES.c.agency).where(CASES.c.case_id.in_(waiting)))
        if agency != UNASSIGNED_AGENCY_CODE}


# A lock space of its own for the two-key advisory locks (the one-key ones are the outbox's
# and the migrations').
_CASE_LOCKS = 0x61676e63


async def _lock_cases(session: AsyncSession, shared: Collection[uuid.UUID] = (),
                      exclusive: Collection[uuid.UUID] = ()) -> None:
    """Locks cases by id to the end of the transaction, shared by contacts filed under
    ``unassigned``, exclusive by ``assign_agency``. Not their ``cases`` rows: while the
    contact is recorded its case may have none yet, and one opened and assigned by another
    consumer meanwhile would update a contacts row it cannot see (uncommitted) and never
    wait for it. Taken in a separate statement before reading, so that what is read is what
    the other committed; all in one statement, in key order, so that two batches wait for
    each other only one way (``project_batch`` takes a batch's at once; taking one again is
    free). Ids fold to their last 32 bits (random in any uuid); two cases sharing a key only
    wait for each other."""
    modes = {_case_key(case_id): False for case_id in shared}
    modes.update((_case_key(case_id), True) for case_id in exclusive)
    if not modes:
        return
    keys = sorted(modes)
    await session.execute(text(
        "SELECT CASE WHEN x THEN pg_advisory_xact_lock(:space, k) "
        "ELSE pg_advisory_xact_lock_shared(:space, k) END "
        "FROM unnest(CAST(:keys AS integer[]), CAST(:exclusive AS boolean[])) AS l (k, x)"),
        {"space": _CASE_LOCKS, "keys": keys, "exclusive": [modes[k] for k in keys]})


def _case_key(case_id: uuid.UUID) -> int:
    return ((case_id.int & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def _filed_unassigned(contacts: Iterable[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(data["id"]) for data in contacts
            if data["reported_agency"]["code"] == UNASSIGNED_AGENCY_CODE]


def _assigning(transitions: Iterable[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(data["case_id"]) for data in transitions
            if data.get("action") == ASSIGN_AGENCY]


async def record_opened(session: AsyncSession, data: dict[str, Any], zone: str) -> None:
    await record_openings(session, [data], zone)


async def record_openings(session: AsyncSession, openings: Sequence[dict[str, Any]],
                          zone: str) -> None:
    """The cases of ``case.opened`` events: one insert, one addition to the counts."""
    rows = [opening_values(data) for data in openings]
    if not rows:
        return
    new = set((await session.execute(_INSERT_OPENINGS, rows)).scalars())
    increments: list[counts.Increment] = []
    for row in rows:
        if row["case_id"] in new:
            new.discard(row["case_id"])
            at = row["received_at"]
            increments += [(at, counts.OPENED, received_year(at, zone)),
                           (at, counts.STATUS_IN, row["status"])]
    await counts.add(session, increments)


async def record_transition(session: AsyncSession, data: dict[str, Any], zone: str) -> None:
    await record_transitions(session, [data], zone)


async def record_transitions(session: AsyncSession, transitions: Sequence[dict[str, Any]],
                             zone: str) -> None:
    """The ``case.transitioned`` events of a batch, in order: their cases read (and locked) in
    one query, the clarification requests their first steps may answer in another, each case's
    steps folded in order, then one insert of the steps, one update of the cases and one
    addition each to the counts and the histograms. A step already applied (under another event
    id) is passed over; a case not known yet, or a version gap, holds the batch back."""
    if not transitions:
        return
    case_ids = sorted({uuid.UUID(data["case_id"]) for data in transitions})
    await _lock_cases(session, exclusive=_assigning(transitions))  # before any row's lock
    cases = {row["case_id"]: dict(row) for row in (await session.execute(
        select(CASES).where(CASES.c.case_id.in_(case_ids))
        .order_by(CASES.c.case_id).with_for_update())).mappings()}
    # The step before each case's next one, when it asked the agency for a clarification.
    asked: dict[uuid.UUID, dict[str, Any]] = {row["case_id"]: dict(row) for row in (
        await session.execute(select(TRANSITIONS).where(
            tuple_(TRANSITIONS.c.case_id, TRANSITIONS.c.version).in_(
                [(case_id, case["version"]) for case_id, case in cases.items()]),
            TRANSITIONS.c.action == "request_clarification"))).mappings()} if cases else {}
    steps: list[dict[str, Any]] = []
    increments: list[counts.Increment] = []
    samples: list[histograms.Sample] = []
    decrements: list[counts.Increment] = []
    changed: dict[uuid.UUID, None] = {}  # the cases changed, in order
    assigned: dict[uuid.UUID, tuple[str, str]] = {}  # case: (agency before, agency now)
    assignments: list[dict[str, Any]] = []
    for data in transitions:
        case_id = uuid.UUID(data["case_id"])
        version = int(data["version"])
        case = cases.get(case_id)
        if case is None:
            raise RetryLater(f"case {case_id} is not known yet")
        if version <= case["version"]:
            continue  # applied already under another event id: nothing to do
        if version != case["version"] + 1:
            raise RetryLater(f"case {case_id} is at version {case['version']}, "
                             f"event is {version}")
        changed[case_id] = None
        if data["action"] == ASSIGN_AGENCY:
            before = assigned.get(case_id, (case["agency"], ""))[0]
            assignments.append({"case_id": case_id, "version": version,
                                "status": case["status"],
                                "at": datetime.fromisoformat(data["at"]),
                                "agency": data["reported_agency"]["code"]})
            _move_steps(case, data["reported_agency"]["code"], increments, decrements)
            case["version"], case["agency"] = version, data["reported_agency"]["code"]
            assigned[case_id] = (before, case["agency"])
            continue
        step = _step(case, asked.pop(case_id, None), data, zone, increments, samples)
        steps.append(step)
        if step["action"] == "request_clarification":
            asked[case_id] = step
    decrements += await _reassign_contacts(session, assigned, increments)
    await counts.add(session, increments, decrements)
    await histograms.add(session, samples)
    for start in range(0, len(steps), ROWS_PER_STATEMENT):
        await session.execute(TRANSITIONS.insert().values(
            steps[start:start + ROWS_PER_STATEMENT]))
    if assignments:
        await session.execute(ASSIGNMENTS.insert(), assignments)
    await _update_cases(session, [cases[case_id] for case_id in changed])


# Not a step of the workflow (the case stays where it is): a case's agency given to a report
# filed without one. It changes the case's and its contact's agency, and which agency the
# received report counts for; no transition row, so no figure over the steps sees it (its
# row of ``assignments`` moves ``as_of`` on and is a row of ``bi_transitions``).
ASSIGN_AGENCY = "assign_agency"


async def _reassign_contacts(session: AsyncSession, assigned: dict[uuid.UUID, tuple[str, str]],
                             increments: list[counts.Increment]) -> list[counts.Increment]:
    """The contacts of the cases given an agency, counted for it from now on: their rows
    changed, the received reports' counts moved (appended to ``increments``; those taken away
    returned). A contact not recorded yet takes the agency when it comes (``record_contacts``)."""
    if not assigned:
        return []
    ids = sorted(assigned)
    given = func.unnest(cast(ids, ARRAY(CONTACTS.c.complaint_id.type)),
                        cast([assigned[i][1] for i in ids], ARRAY(CONTACTS.c.agency.type))
                        ).table_valued("complaint_id", "agency").render_derived()
    found = {row.complaint_id: row for row in await session.execute(
        update(CONTACTS).where(CONTACTS.c.complaint_id == given.c.complaint_id)
        .values(agency=given.c.agency)
        .returning(CONTACTS.c.complaint_id, CONTACTS.c.kind, CONTACTS.c.received_at))}
    decrements: list[counts.Increment] = []
    for case_id, row in sorted(found.items()):
        before, now = assigned[case_id]
        decrements.append((row.received_at, counts.CONTACTS_AGENCY, before))
        increments.append((row.received_at, counts.CONTACTS_AGENCY, now))
        if row.kind in CASE_OPENING_KINDS:
            decrements.append((row.received_at, counts.RECEIVED_AGENCY, before))
            increments.append((row.received_at, counts.RECEIVED_AGENCY, now))
    return decrements


def _move_steps(case: dict[str, Any], agency: str, increments: list[counts.Increment],
                decrements: list[counts.Increment]) -> None:
    """The register and close steps of ``case`` counted by agency, moved to ``agency``."""
    for at, measure in ((case["registered_at"], counts.REGISTERED_BY["agency"]),
                        (case["closed_at"], counts.CLOSED_BY["agency"])):
        if at is not None:
            decrements.append((at, measure, case["agency"]))
            increments.append((at, measure, agency))


def _step(case: dict[str, Any], asked: dict[str, Any] | None, data: dict[str, Any], zone: str,
          increments: list[counts.Increment], samples: list[histograms.Sample]
          ) -> dict[str, Any]:
    """One step of ``case`` (its row, changed in place): the ``transitions`` row it adds, its
    counts and samples appended. ``asked`` is the step before when it asked for a
    clarification."""
    version = int(data["version"])
    at = datetime.fromisoformat(data["at"])
    year = received_year(case["received_at"], zone)
    increments.append((at, counts.STATUS_OUT, data["from_status"]))
    if data["to_status"] != "closed":
        increments.append((at, counts.STATUS_IN, data["to_status"]))
    if data["action"] == "register":
        increments += [(at, counts.REGISTERED, ""),
                       *((at, counts.REGISTERED_BY[g], case[g]) for g in counts.GROUPINGS)]
    if data["to_status"] in EXAMINATION_STATUSES and case["examination_at"] is None:
        increments.append((at, counts.EXAMINED, year))
    closed_after_days = None
    if data["to_status"] == "closed":
        closed_after_days = (at - case["received_at"]) // timedelta(days=1)
        if data.get("closure_stage"):
            samples.append((at, histograms.DAYS_TO_CLOSE, data["closure_stage"],
                            (at - case["received_at"]) // timedelta(hours=1)))
        increments += [(at, counts.CLOSED, year),
                       *((at, counts.CLOSED_BY[g], case[g]) for g in counts.GROUPINGS),
                       (at, counts.CLOSED_STAGE, data.get("closure_stage") or ""),
                       (at, counts.CLOSED_REASON, data.get("reason") or "")]
        if case["examination_at"] is not None:
            increments.append((at, counts.CLOSED_EXAMINED, year))
    agency = data.get("agency") or case["agency"]
    due_at = _time(data.get("due_at"))
    if data["action"] == "request_clarification":
        increments.append((at, counts.CLARIFICATION_REQUESTED, agency))
        if due_at is not None:
            increments.append((max(at, due_at), counts.OVERDUE_FROM, agency))
    answered_after_hours = asked_at = None
    if asked is not None and (data["action"] == "respond"
                              or case["status"] == "awaiting_agency"):
        if asked["due_at"] is not None:
            increments.append((max(asked["at"], asked["due_at"], at), counts.OVERDUE_ENDED,
                               asked["agency"]))
        if data["action"] == "respond":
            answered_after_hours, asked_at = (at - asked["at"]) // timedelta(hours=1), asked["at"]
            samples.append((at, histograms.RESPONSE_HOURS, agency, answered_after_hours))
    case["version"] = version
    case["status"] = data["to_status"]
    if data["action"] == "register" and case["registered_at"] is None:
        case["registered_at"] = at
    if data["to_status"] in EXAMINATION_STATUSES and case["examination_at"] is None:
        case["examination_at"] = at
    if data["to_status"] == "closed":
        case["closed_at"] = at
        case["closed_after_days"] = closed_after_days
        case["closure_stage"] = data.get("closure_stage")
        case["closure_reason"] = data.get("reason")
    return {"case_id": case["case_id"], "version": version, "action": data["action"],
            "from_status": data["from_status"], "to_status": data["to_status"], "at": at,
            "agency": agency, "reason": data.get("reason"),
            "closure_stage": data.get("closure_stage"), "due_at": due_at,
            "resolution": data.get("resolution"), "answered_after_hours": answered_after_hours,
            "asked_at": asked_at}


# What a step (or ``assign_agency``) changes in its case's row.
CASE_STEP_COLUMNS = ("version", "agency", "status", "registered_at", "examination_at",
                     "closed_at", "closed_after_days", "closure_stage", "closure_reason")


async def _update_cases(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """The cases' rows as their steps left them, in one update from arrays."""
    if not rows:
        return
    columns = ("case_id", *CASE_STEP_COLUMNS)
    given = func.unnest(*(cast([row[name] for row in rows], ARRAY(CASES.c[name].type))
                          for name in columns)).table_valued(*columns).render_derived()
    await session.execute(
        update(CASES).where(CASES.c.case_id == given.c.case_id)
        .values({name: given.c[name] for name in CASE_STEP_COLUMNS}))


async def project(session: AsyncSession, event: Event) -> None:
    await project_batch(session, [event])


async def project_batch(session: AsyncSession, events: Sequence[Event]) -> None:
    """Projects a batch a statement or two per table: contacts, then openings (which a
    transition may need), then transitions in order; evidence counts toward no published
    figure."""
    contacts: list[dict[str, Any]] = []
    openings: list[dict[str, Any]] = []
    transitions: list[dict[str, Any]] = []
    for event in events:
        if event.type == COMPLAINT_RECEIVED:
            contacts.append(event.data)
        elif event.type == CASE_OPENED:
            openings.append(event.data)
        elif event.type == CASE_TRANSITIONED:
            transitions.append(event.data)
        elif event.type != COMPLAINT_ATTACHMENT_ADDED:
            raise UnknownEventType(event.type)
    await _lock_cases(session, shared=_filed_unassigned(contacts),
                      exclusive=_assigning(transitions))
    await record_contacts(session, contacts)
    if openings or transitions:
        zone = await office_timezone(session)
        await record_openings(session, openings, zone)
        await record_transitions(session, transitions, zone)


async def office_timezone(session: AsyncSession) -> str:
    zone = await session.scalar(text("SELECT metrics.office_timezone()"))
    return str(zone)


def received_year(at: datetime, zone: str) -> str:
    """The year a case was received, in the office's time zone (a key of the daily counts)."""
    return str(at.astimezone(ZoneInfo(zone)).year)


SUBSCRIPTION = Subscription(CONSUMER, (COMPLAINTS_TOPIC, CASES_TOPIC), project, METRICS_EVENTS,
                            batch_handler=project_batch, patient=True)
