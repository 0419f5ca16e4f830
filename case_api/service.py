"""Carrying a case through the workflow table; every change is recorded and published."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from case_api import repository
from case_api.models import Case, Transition
from case_api.schemas import (
    AgencyRef,
    CaseOpened,
    CaseOut,
    CaseSummary,
    CaseTransitioned,
    HistoryEntry,
    TransitionRequest,
)
from case_api.workflow import (
    DETAIL_FIELDS,
    WORKFLOW,
    Action,
    ActionName,
    Status,
    allowed_actions,
    closure_stage,
)
from shared import outbox
from shared.auth import Actor, Role
from shared.conditional import IfMatch
from shared.events import CASE_OPENED, CASE_TRANSITIONED, CASES_TOPIC, Event, new_event
from shared.problems import Problem, invalid, not_found
from shared.tables import CASE_EVENTS
from shared.text import is_blank
from shared.vocabulary import Kind, opening_status, utc_text

SOURCE = "/aduan/case"
SYSTEM = Actor(name="system", role=Role.admin)
# What the history and the events say of the system's own actions (the expiry), never "admin".
SYSTEM_ROLE = "system"
# Reported periods end with 2200 (metrics); a due date past that is a typo, and one near the
# calendar's end (year 9999) could not even be shown in the office's time zone.
DUE_BEFORE = datetime(2201, 1, 1, tzinfo=UTC)


# --- reading -----------------------------------------------------------------------------------

def can_see(actor: Actor, case: Case) -> bool:
    if actor.role is Role.liaison:
        return case.reported_agency_code == actor.agency_code
    return actor.role in (Role.assistant, Role.admin, Role.analyst)


async def visible_case(session: AsyncSession, actor: Actor, case_id: uuid.UUID, *,
                       for_update: bool = False) -> Case:
    case = await repository.get(session, case_id, for_update=for_update)
    if case is None or not can_see(actor, case):
        raise not_found("case")
    return case


def reporter_for(actor: Actor, case: Case) -> dict[str, Any] | None:
    """Liaisons never see a confidential reporter; analysts never see personal data at all."""
    reporter = case.reporter
    if reporter is None:
        return None
    confidential = bool(reporter.get("confidential"))
    if actor.role is Role.analyst or (actor.role is Role.liaison and confidential):
        return {"confidential": confidential} if actor.role is Role.analyst else {
            "confidential": True}
    return reporter


def etag(case: Case) -> str:
    """The case's entity tag: its version, quoted (API.md: ``ETag: "<version>"``)."""
    return f'"{case.version}"'


def is_overdue(case: Case, now: datetime) -> bool:
    return case.status != Status.closed.value and case.due_at is not None and case.due_at < now


def summarize(case: Case, actor: Actor, now: datetime) -> CaseSummary:
    return CaseSummary(
        id=case.id, tracking_number=case.tracking_number, kind=case.kind,
        status=Status(case.status), version=case.version, channel=case.channel,
        substance=case.substance,
        reported_agency=AgencyRef(code=case.reported_agency_code, name=case.reported_agency_name),
        reporter=reporter_for(actor, case),
        summary=case.summary if reads_free_text(actor) else None, received_at=case.received_at,
        assignee=case.assignee, due_at=case.due_at, overdue=is_overdue(case, now),
        closure_stage=case.closure_stage,
        closure_reason=case.closure_reason,
        maladministration=case.maladministration,
        **facts_for(actor, case),
    )


def reads_free_text(actor: Actor) -> bool:
    """Analysts read figures, not people's stories: free text (the complaint's summary and
    account, the notes written on the case) and places may name the reporter."""
    return actor.role is not Role.analyst


def facts_for(actor: Actor, case: Case) -> dict[str, Any]:
    """The complaint's facts, so that a liaison can answer from them (``reads_free_text``)."""
    personal = reads_free_text(actor)
    return {
        "description": case.description if personal else None,
        "location": case.location if personal else None,
        "incident_date": case.incident_date,
        "reported_to_agency_first": case.reported_to_agency_first,
    }


def _formal_failure(case: Case) -> str | None:
    """Why a case cannot be registered yet, or None.

    A report that says the reporter did not go to the agency first cannot be registered by an
    assistant until a completion round supplies the proof (``complete`` records it). Rapid
    responses skip this check (DOMAIN.md), and an admin may take every action (API.md), as
    imports of historical records need. The event's age is left to the assistant, who rejects
    with reason ``expired``, since imports and late entries make it unreliable here.
    """
    if case.kind == Kind.report.value and case.reported_to_agency_first is False:
        return ("The reporter did not complain to the agency first; reject with reason "
                "not_reported_to_agency or request completion.")
    return None


def actions_for(case: Case, role: Role) -> list[str]:
    """The actions ``role`` may take on this case now: the table, less what a rule forbids."""
    actions = allowed_actions(Status(case.status), role, agency=case.reported_agency_code)
    if role is not Role.admin and _formal_failure(case) is not None:
        actions = [a for a in actions if a != ActionName.register.value]
    return actions


def render(case: Case, history: list[Transition], actor: Actor, now: datetime) -> CaseOut:
    summary = summarize(case, actor, now)
    return CaseOut(
        **summary.model_dump(),
        complexity=case.complexity,
        resolution=case.resolution,
        transferred_to=case.transferred_to,
        allowed_actions=actions_for(case, actor.role),
        history=[
            HistoryEntry(action=t.action, from_status=Status(t.from_status),
                         to_status=Status(t.to_status), actor=t.actor, role=t.role, at=t.at,
                         note=t.note if reads_free_text(actor) else None, reason=t.reason,
                         details=t.details)
            for t in history
        ],
    )


# --- opening -----------------------------------------------------------------------------------

def _case_row(complaint: dict[str, Any]) -> dict[str, Any] | None:
    """The case a ``complaint.received`` opens, as a row; None for kinds that open none."""
    kind = Kind(complaint["kind"])
    status = opening_status(kind)
    if status is None:
        return None
    agency = complaint["reported_agency"]
    received_at = datetime.fromisoformat(complaint["received_at"])
    incident = complaint.get("incident_date")
    return {
        "id": uuid.UUID(complaint["id"]),
        "tracking_number": complaint["tracking_number"],
        "kind": kind.value,
        "channel": complaint["channel"],
        "substance": complaint["substance"],
        "reported_agency_code": agency["code"],
        "reported_agency_name": agency["name"],
        "reporter": complaint.get("reporter"),
        "summary": complaint["summary"],
        "description": complaint.get("description"),
        "location": complaint.get("location"),
        "incident_date": datetime.fromisoformat(incident).date() if incident else None,
        "reported_to_agency_first": complaint.get("reported_to_agency_first"),
        "received_at": received_at,
        "status": status.value,
        "version": 1,
        "last_transition_at": received_at,
    }


def _opened(row: dict[str, Any]) -> Event:
    return new_event(
        CASE_OPENED, source=SOURCE, subject=str(row["id"]), time=row["received_at"],
        data=CaseOpened(case_id=row["id"], kind=Kind(row["kind"]), status=Status(row["status"]),
                        version=1, agency=row["reported_agency_code"],
                        substance=row["substance"], channel=row["channel"],
                        received_at=row["received_at"]).model_dump(mode="json"),
    )


async def open_cases(session: AsyncSession,
                     complaints: Sequence[tuple[dict[str, Any], Mapping[str, str] | None]]
                     ) -> int:
    """Opens the cases of a batch of ``complaint.received`` events (each with the trace its
    ``case.opened`` continues), a few statements for the whole batch: the agencies counted,
    the cases inserted, their ``case.opened`` events appended. Returns how many were opened now
    (a case already open is not opened again)."""
    await repository.see_agencies(session, [
        (c["reported_agency"]["code"], c["reported_agency"]["name"],
         datetime.fromisoformat(c["received_at"])) for c, _ in complaints])
    rows = [(row, carrier) for row, carrier in
            ((_case_row(complaint), carrier) for complaint, carrier in complaints)
            if row is not None]
    opened = await repository.insert_cases(session, [row for row, _ in rows])
    events = []
    for row, carrier in rows:
        if row["id"] in opened:  # once, though the batch may hold its complaint twice
            opened.discard(row["id"])
            events.append((_opened(row), carrier))
    await outbox.append_many(session, CASE_EVENTS, CASES_TOPIC, events)
    return len(events)


# --- transitions -------------------------------------------------------------------------------

def _parse_action(name: str) -> Action:
    try:
        action = WORKFLOW[ActionName(name)]
    except ValueError:
        action = None
    if action is None or action.name is ActionName.expire:
        raise invalid("/action", f"unknown action {name!r}")
    return action


def _check_fields(action: Action, request: TransitionRequest, source: Status) -> None:
    given = request.model_dump(exclude_none=True)
    for field in action.required:
        if field not in given or (isinstance(given[field], str) and is_blank(given[field])):
            raise invalid(f"/{field}", f"{field} is required for {action.name.value}")
    accepted = set(action.required) | set(action.optional)
    for field in DETAIL_FIELDS:
        if field in given and field not in accepted:
            raise invalid(f"/{field}", f"{field} is not accepted for {action.name.value}")
    if (action.while_agency is not None and request.reported_agency is not None
            and request.reported_agency.code == action.while_agency):
        raise invalid("/reported_agency/code",
                      f"{action.name.value} must name an agency other than "
                      f"{action.while_agency!r}")
    if action.reasons is not None and request.reason is not None:
        allowed = action.reasons.get(source, frozenset())
        if request.reason not in allowed:
            raise invalid("/reason", f"reason must be one of {sorted(r.value for r in allowed)} "
                                     f"for {action.name.value} from {source.value}")


def _check_formal(action: Action, case: Case, actor: Actor) -> None:
    if action.name is not ActionName.register or actor.role is Role.admin:
        return
    failure = _formal_failure(case)
    if failure is not None:
        raise Problem(409, failure, status_now=case.status,
                      allowed_actions=actions_for(case, actor.role))


def _effective_time(request: TransitionRequest, case: Case, actor: Actor,
                    now: datetime) -> datetime:
    if request.effective_at is None:
        return max(now, case.last_transition_at)
    if actor.role is not Role.admin:
        raise invalid("/effective_at", "effective_at may be set only by an admin")
    if request.effective_at > now:
        raise invalid("/effective_at", "effective_at may not be in the future")
    if request.effective_at < case.last_transition_at:
        raise invalid("/effective_at", "effective_at may not be before the case's last "
                                       "transition or its receipt")
    return request.effective_at


def _check_due(request: TransitionRequest, at: datetime) -> None:
    if request.due_at is not None and request.due_at <= at:
        raise invalid("/due_at", "due_at must be later than the transition's effective time")
    if request.due_at is not None and request.due_at >= DUE_BEFORE:
        raise invalid("/due_at", f"due_at must be before {DUE_BEFORE.year}, the end of the "
                                 "calendar the office reports on")


async def transition(session: AsyncSession, actor: Actor, case_id: uuid.UUID,
                     request: TransitionRequest, *, if_match: IfMatch | None,
                     now: datetime, zone: tzinfo = UTC) -> Case:
    """Takes one action; ``zone`` is the office's time zone, in which due dates count days."""
    action = _parse_action(request.action)
    case = await visible_case(session, actor, case_id, for_update=True)
    if actor.role is not Role.admin and actor.role not in action.roles:
        raise Problem(403, f"The role {actor.role.value} may not {action.name.value}.")
    if if_match is not None and not if_match.matches(etag(case)):
        raise Problem(412, f"If-Match does not hold the case's current entity tag {etag(case)} "
                           f"(strong comparison: weak tags never match).",
                      current_version=case.version)
    source = Status(case.status)
    if source not in action.sources:
        raise Problem(409, f"{action.name.value} is not allowed while the case is "
                           f"{source.value}.",
                      status_now=source.value,
                      allowed_actions=actions_for(case, actor.role))
    if action.while_agency is not None and case.reported_agency_code != action.while_agency:
        raise Problem(409, f"{action.name.value} is allowed only while the case's agency is "
                           f"{action.while_agency!r}; this case's is "
                           f"{case.reported_agency_code!r}.",
                      status_now=source.value,
                      allowed_actions=actions_for(case, actor.role))
    _check_fields(action, request, source)
    at = _effective_time(request, case, actor, now)
    _check_due(request, at)
    _check_formal(action, case, actor)
    await apply(session, case, action, actor, at, request, zone=zone)
    return case


def default_due(at: datetime, action: Action, zone: tzinfo) -> datetime | None:
    """The end (24:00 local) of the day that is the action's days after ``at``'s local day.

    Days are calendar days on the office's calendar (API.md conventions); the contract's own
    example has a clarification asked on 10 March due at ``2022-03-24T17:00:00Z``.
    """
    if action.default_due is None:
        return None
    last_day = at.astimezone(zone).date() + action.default_due
    return datetime.combine(last_day + timedelta(days=1), time(), zone).astimezone(UTC)


async def apply(session: AsyncSession, case: Case, action: Action, actor: Actor, at: datetime,
                request: TransitionRequest | None, *, zone: tzinfo = UTC) -> Transition:
    """Moves the case, writes its history row and its event, all in the caller's transaction.

    Times are kept in UTC, whatever offset the caller wrote them in, so events carry UTC too.
    """
    source = Status(case.status)
    at = at.astimezone(UTC)
    given = request.model_dump(exclude_none=True, mode="json") if request else {}
    reason = action.fixed_reason.value if action.fixed_reason else given.get("reason")
    due_at: datetime | None = None
    if action.default_due is not None:
        # An explicit due_at arrives in UTC (schemas.UtcInput); the default is computed in UTC.
        due_at = request.due_at if request and request.due_at else default_due(at, action, zone)
    elif action.target is None:
        due_at = case.due_at  # staying where it is, the case still waits for the same thing
    target = action.target_from(source)
    case.status = target.value
    case.version += 1
    case.last_transition_at = at
    case.due_at = due_at
    for field in ("assignee", "complexity", "resolution", "maladministration", "transferred_to"):
        if field in given:
            setattr(case, field, given[field])
    if action.completes_formal and case.reported_to_agency_first is False:
        # The assistant completing the round attests the reporter showed it went to the agency
        # first; the complaint keeps what was filed, the case what verification now knows.
        case.reported_to_agency_first = True
    if "reported_agency" in given:
        await _assign_agency(session, case, given["reported_agency"], at)
    if target is Status.closed:
        case.closure_stage = closure_stage(source).value
        case.closure_reason = reason
        case.closed_at = at
    details = {k: v for k, v in given.items()
               if k in ("assignee", "complexity", "resolution", "maladministration",
                        "transferred_to", "reported_agency")}
    if due_at is not None:
        details["due_at"] = utc_text(due_at)
    role = SYSTEM_ROLE if actor is SYSTEM else actor.role.value
    entry = Transition(case_id=case.id, version=case.version, action=action.name.value,
                       from_status=source.value, to_status=case.status, actor=actor.name,
                       role=role, at=at, note=given.get("note"), reason=reason,
                       details=details)
    session.add(entry)
    await session.flush()
    await outbox.append(session, CASE_EVENTS, CASES_TOPIC, transitioned_event(case, entry))
    return entry


async def _assign_agency(session: AsyncSession, case: Case, agency: dict[str, str],
                         at: datetime) -> None:
    """The case reported against ``agency`` from now on; its complaint counted there."""
    await repository.move_complaint(
        session, (case.reported_agency_code, case.reported_agency_name),
        (agency["code"], agency["name"], at))
    case.reported_agency_code, case.reported_agency_name = agency["code"], agency["name"]


def transitioned_event(case: Case, entry: Transition) -> Event:
    data = CaseTransitioned(
        case_id=case.id,
        action=entry.action,
        from_status=entry.from_status,
        to_status=entry.to_status,
        actor=entry.actor,
        role=entry.role,
        at=entry.at,
        version=entry.version,
        reason=entry.reason,
        closure_stage=case.closure_stage if entry.to_status == Status.closed.value else None,
        maladministration=entry.details.get("maladministration"),
        due_at=case.due_at,
        resolution=entry.details.get("resolution"),
        transferred_to=entry.details.get("transferred_to"),
        case_resolution=case.resolution,
        case_transferred_to=case.transferred_to,
        agency=case.reported_agency_code,
        reported_agency=(AgencyRef(**entry.details["reported_agency"])
                         if "reported_agency" in entry.details else None),
    )
    # ``reported_agency`` is written only where it is said (assign_agency), so that every
    # other transition's data stays as it was.
    return new_event(CASE_TRANSITIONED, source=SOURCE, subject=str(case.id), time=entry.at,
                     data=data.model_dump(mode="json", exclude={"reported_agency"}
                                          if data.reported_agency is None else None))


async def expire_overdue(session: AsyncSession, now: datetime) -> int:
    """Closes ``awaiting_completion`` cases past their due date, each exactly once."""
    expire = WORKFLOW[ActionName.expire]
    cases = await repository.expired_awaiting_completion(session, now)
    for case in cases:
        assert case.due_at is not None
        await apply(session, case, expire, SYSTEM, max(case.due_at, case.last_transition_at),
                    None)
    return len(cases)
