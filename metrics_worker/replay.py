"""The projection's facts from a whole log at once, for ``aduan metrics rebuild``.

``metrics_worker.consumer`` applies one event at a time against the database; a rebuild has
every event in log order in hand, so it keeps the cases in memory and folds the log into the
rows of ``metrics.contacts``, ``metrics.cases`` and ``metrics.transitions`` exactly as the
projection would leave them, to be written with ``COPY``. The increments of the aggregate
tables are counted at the same time, as the projection adds them (``metrics_worker.tally``).

What the live consumer would not apply is set aside with the reason its dead letter would
carry: an unknown event type, an event of a case not known (yet), a version gap, a record that
is not an event, a field missing or too long for its column. The log's order per key (one
partition per case, one position per event) is what makes "not known yet" final here: the event
that was missing would have come before.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import String, Table

from metrics_worker import counts, histograms
from metrics_worker.consumer import normalize_place
from metrics_worker.models import AssignmentFact, CaseFact, Contact, TransitionFact
from metrics_worker.tally import CLOSE, CONTACT, REGISTER, Tally
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    Event,
    MalformedEvent,
    plain_envelope,
    plain_fields,
)
from shared.vocabulary import CASE_OPENING_KINDS, EXAMINATION_STATUSES

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
class NotApplicable(Exception):
    """What the live consumer would dead-letter (after retrying, for a case not known)."""


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _columns(table: Any) -> set[str]:
    return {c.name for c in table.__table__.columns}


# The columns of each fact table in the order the fold builds its rows (``COPY`` names them).
# A column added to a fact table stops the import here until the fold fills it, rather than a
# rebuild leaving it empty where the live projection fills it.
CONTACT_COLUMNS = ["complaint_id", "kind", "channel", "substance", "agency", "received_at",
                   "place"]
CASE_COLUMNS = ["case_id", "kind", "channel", "substance", "agency", "received_at",
                "opened_status", "status", "version", "registered_at", "examination_at",
                "closed_at", "closure_stage", "closure_reason", "closed_after_days"]
TRANSITION_COLUMNS = ["case_id", "version", "action", "from_status", "to_status", "at",
                      "agency", "reason", "closure_stage", "due_at", "resolution",
                      "answered_after_hours", "asked_at"]
ASSIGNMENT_COLUMNS = ["case_id", "version", "status", "at", "agency"]
if (set(CONTACT_COLUMNS) != _columns(Contact) or set(CASE_COLUMNS) != _columns(CaseFact)
        or set(TRANSITION_COLUMNS) != _columns(TransitionFact)
        or set(ASSIGNMENT_COLUMNS) != _columns(AssignmentFact)):
    raise RuntimeError("a metrics fact table's columns changed: teach metrics_worker/replay.py "
                       "(the set-based rebuild) how the projection fills them")


def _length_check(table: Table, columns: list[str]) -> Callable[[Sequence[Any]], None]:
    """Raises ``NotApplicable`` for a row the database would refuse as too long."""
    limits = []
    for i, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, String) and kind.length:
            limits.append((i, name, kind.length))

    def check(row: Sequence[Any]) -> None:
        for i, name, length in limits:
            value = row[i]
            if value is not None and len(value) > length:
                raise NotApplicable(f"{table.name}.{name}: value longer than {length}")
    return check


_check_contact = _length_check(Contact.__table__, CONTACT_COLUMNS)  # type: ignore[arg-type]
_check_case = _length_check(CaseFact.__table__, CASE_COLUMNS)  # type: ignore[arg-type]
_check_transition = _length_check(TransitionFact.__table__,  # type: ignore[arg-type]
                                  TRANSITION_COLUMNS)

# A case in memory is its row (CASE_COLUMNS order) and, after it, the action, time, due time and
# agency of its last step (what the next step needs when that one asked for a clarification).
(_CASE_ID, _KIND, _AGENCY, _RECEIVED_AT, _STATUS, _VERSION, _REGISTERED_AT, _EXAMINATION_AT,
 _CLOSED_AT, _CLOSURE_STAGE, _CLOSURE_REASON, _CLOSED_AFTER_DAYS) = (
    CASE_COLUMNS.index(name) for name in (
        "case_id", "kind", "agency", "received_at", "status", "version", "registered_at",
        "examination_at", "closed_at", "closure_stage", "closure_reason", "closed_after_days"))
# A case's grouping columns, in ``counts.GROUPINGS`` order, are ``case[_KIND:_RECEIVED_AT]``.
if CASE_COLUMNS[_KIND:_RECEIVED_AT] != list(counts.GROUPINGS):
    raise RuntimeError("metrics.cases' grouping columns moved: see Replay._count_step")
# How many contacts or steps the tally notes (``Tally.grouped``) before it counts them.
SETTLED_EVERY = 100_000
_REGISTERED_AGENCY, _CLOSED_AGENCY = counts.REGISTERED_BY["agency"], counts.CLOSED_BY["agency"]
_AGENCY_LENGTH = CaseFact.__table__.c.agency.type.length  # type: ignore[attr-defined]
ASSIGN_AGENCY = "assign_agency"  # not a step: see ``consumer.ASSIGN_AGENCY``
_PREVIOUS_ACTION, _PREVIOUS_AT, _PREVIOUS_DUE_AT, _PREVIOUS_AGENCY = (
    len(CASE_COLUMNS) + i for i in range(4))
# The columns of ``metrics.transitions`` that say what a case's last step was, in that order.
PREVIOUS_STEP_COLUMNS = ["action", "at", "due_at", "agency"]


# A uuid as ``str(uuid.UUID(...))`` spells it: a third of the cost of ``uuid.UUID`` to tell,
# and nothing to convert. Only ASCII hexadecimal digits (``uuid.UUID`` takes any Unicode digit).
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _canonical(value: Any) -> str:
    """A uuid as ``str(uuid.UUID(...))`` spells it (as the services write it); raises what
    ``uuid.UUID(value)`` raises for anything that is not one."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(value))


class _Deferred(Exception):
    """A step of a case handed over: folded once the case is taken back (``revive``)."""


@dataclass
class Replay:
    """The log folded, event by event in log order, into the read model's rows; the
    increments of the aggregate tables counted in ``tally`` (days of the office's time zone).

    A case is kept in memory while open; once closed it is handed over to be written (``take``)
    and only its version is kept, which is all a later event needs: the workflow takes a closed
    case nowhere, so what comes later is the same step again (a no-op) or a version gap (set
    aside). Should a next step come all the same, it and every later event of its case wait
    (``deferred``) until the case is read back from what was written (``revive``).
    """

    tally: Tally
    # Rows not yet taken (``take``): contacts, transitions, and the ids of the events applied
    # (or found to be no-ops), for the processed-event guard; the open cases that closed.
    contacts: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)
    processed: set[str] = field(default_factory=set)
    # Every case and complaint by its id spelt canonically (``_canonical``, as the services
    # write it): the open cases, the version of each case handed over once closed, and the
    # complaints counted.
    cases: dict[str, list[Any]] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    complaints: set[str] = field(default_factory=set)
    # The cases given an agency (``assign_agency``): (agency before, agency now); their
    # contacts' rows are changed once written (``reassigned_contacts``).
    assigned: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Their ``assignments`` rows (ASSIGNMENT_COLUMNS), few enough to be written at the end.
    assignments: list[tuple[Any, ...]] = field(default_factory=list)
    # Events of cases handed over and to be read back: each with what the caller gave with it.
    deferred: list[tuple[str, str, dict[str, Any], bytes | str, Any]] = field(
        default_factory=list)
    reviving: set[str] = field(default_factory=set)

    def fold(self, value: bytes | str, origin: Any = None) -> tuple[Event | None, str] | None:
        """Folds one record of the log in; the event (``None`` when the record is not one)
        and the reason where the live consumer would dead-letter it. Nothing changes then.
        An event deferred (see the class) is kept with ``origin``."""
        fields = plain_fields(value)
        if fields is not None:
            event_id, event_type, data = fields
        elif (attributes := plain_envelope(value)) is not None:
            event_id, event_type, data = attributes["id"], attributes["type"], attributes["data"]
        else:  # not as the services write it: the SDK decides
            try:
                event = Event.from_json(value)
            except MalformedEvent as exc:
                return None, str(exc)
            event_id, event_type, data = event.id, event.type, event.data
        try:
            self._apply(event_id, event_type, data)
        except NotApplicable as exc:
            return Event.read(value), str(exc)
        except _Deferred:
            self.deferred.append((event_id, event_type, data, value, origin))
        return None

    def revive(self, cases: list[list[Any]]) -> list[tuple[Any, Event | None, str]]:
        """Folds the deferred events in, their cases read back from what was written (each a
        row in CASE_COLUMNS order, then PREVIOUS_STEP_COLUMNS of its last step); those the
        live consumer would dead-letter, with their origin."""
        for case in cases:
            case_id = case[_CASE_ID] = str(case[_CASE_ID])
            self.cases[case_id] = case
            self.closed.pop(case_id, None)
            self.closing.append(case_id)
        self.reviving.clear()
        deferred, self.deferred = self.deferred, []
        rejected: list[tuple[Any, Event | None, str]] = []
        for event_id, event_type, data, value, origin in deferred:
            try:
                self._apply(event_id, event_type, data)
            except NotApplicable as exc:
                rejected.append((origin, Event.read(value), str(exc)))
        return rejected

    def _apply(self, event_id: str, event_type: str, data: dict[str, Any]) -> None:
        if event_id in self.processed:
            return  # redelivered: the processed-event table skips it
        try:
            if event_type == CASE_TRANSITIONED:
                self._transition(data)
            elif event_type == COMPLAINT_RECEIVED:
                self._contact(data)
            elif event_type == CASE_OPENED:
                self._opened(data)
            elif event_type != COMPLAINT_ATTACHMENT_ADDED:
                raise NotApplicable(f"unknown event type: {event_type}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NotApplicable(f"{type(exc).__name__}: {exc}") from exc
        self.processed.add(event_id)
        self.fresh.append(event_id)

    def take(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[str],
                            list[list[Any]]]:
        """The contacts, transitions and processed event ids folded since the last take, and
        the cases closed since (final already: later events never change them)."""
        self.tally.settle(at_least=SETTLED_EVERY)
        closed = []
        for case_id in self.closing:
            case = self.cases.get(case_id)
            if case is not None and case[_STATUS] == "closed":
                del self.cases[case_id]
                self.closed[case_id] = case[_VERSION]
                closed.append(case[:_PREVIOUS_ACTION])
        taken = self.contacts, self.transitions, self.fresh, closed
        self.contacts, self.transitions, self.fresh, self.closing = [], [], [], []
        return taken

    def case_rows(self) -> list[list[Any]]:
        return [case[:_PREVIOUS_ACTION] for case in self.cases.values()]

    def _contact(self, data: dict[str, Any]) -> None:
        # ``consumer.contact_values``' row, read in the same order (so failing the same way),
        # the id kept as text: ``COPY`` encodes a ``uuid.UUID`` through a call in Python.
        location = data.get("location") or {}
        place = normalize_place(location.get("place")) if data["channel"] == "on_the_spot" else None
        complaint = _canonical(data["id"])
        row = (complaint, data["kind"], data["channel"], data["substance"],
               data["reported_agency"]["code"], datetime.fromisoformat(data["received_at"]),
               place)
        _check_contact(row)
        if complaint in self.complaints:
            return  # the same complaint under another event id: counted already
        self.complaints.add(complaint)
        self.contacts.append(row)
        kind = row[1]
        add, day = self.tally.add, self.tally.day(row[5])
        add(day, counts.CONTACTS, kind)
        self.tally.grouped[CONTACT].append((day, row[2], row[3], row[4]))
        if place is not None:
            add(day, counts.ON_THE_SPOT_PLACE, place)
        opens_case = kind in CASE_OPENING_KINDS
        if opens_case:
            add(day, counts.RECEIVED_CHANNEL, row[2])
            add(day, counts.RECEIVED_SUBSTANCE, row[3])
            add(day, counts.RECEIVED_AGENCY, row[4])
        assigned = self.assigned.get(complaint)
        if assigned is not None:  # its case was given an agency earlier in the log
            self._move_contact(day, *assigned, received=opens_case)

    def _move_contact(self, day: date, before: str, now: str, received: bool = True) -> None:
        """A contact (and its received report) counted for the agency its case was given, as
        the live projection moves it (``consumer._reassign_contacts``)."""
        measures = (counts.CONTACTS_AGENCY, counts.RECEIVED_AGENCY) if received else \
            (counts.CONTACTS_AGENCY,)
        for measure in measures:
            self.tally.remove(day, measure, before)
            self.tally.add(day, measure, now)

    def reassigned_contacts(self) -> tuple[list[str], list[str]]:
        """The contacts whose case was given an agency, and that agency (columns for an
        ``UPDATE`` from arrays, once every contact is written)."""
        return list(self.assigned), [now for _, now in self.assigned.values()]

    def _opened(self, data: dict[str, Any]) -> None:
        # ``consumer.opening_values``' row, read in the same order, the id kept as text.
        case_id = _canonical(data["case_id"])
        kind, channel, substance = data["kind"], data["channel"], data["substance"]
        agency, received_at = data["agency"], datetime.fromisoformat(data["received_at"])
        status = data["status"]
        row = [  # CASE_COLUMNS
            case_id, kind, channel, substance, agency, received_at, status, status,
               int(data.get("version", 1)), None, None, None, None, None, None]
        _check_case(row)
        if case_id in self.reviving:
            raise _Deferred
        if case_id not in self.cases and case_id not in self.closed:
            row += (None, None, None, None)  # PREVIOUS_STEP_COLUMNS
            self.cases[case_id] = row
            tally = self.tally
            day = tally.day(received_at)
            tally.add(day, counts.OPENED, str(day.year))
            tally.add(day, counts.STATUS_IN, status)

    def _transition(self, data: dict[str, Any]) -> None:
        case_id = data["case_id"]
        case = self.cases.get(case_id)
        if case is None:  # not known, or its id spelt otherwise (upper case, braces)
            case_id = _canonical(case_id)
            case = self.cases.get(case_id)
        version = int(data["version"])
        if case is None:
            self._handed_over(case_id, version)
            return
        if version <= case[_VERSION]:
            return  # applied already under another event id
        if version != case[_VERSION] + 1:
            raise NotApplicable(f"case {case_id} is at version {case[_VERSION]}, "
                                f"event is {version}")
        action = data["action"]
        if action == ASSIGN_AGENCY:
            self._assign(case, version, data["reported_agency"]["code"],
                         datetime.fromisoformat(data["at"]))
            return
        at = datetime.fromisoformat(data["at"])
        to_status = data["to_status"]
        answered_after_hours = asked_at = None
        if action == "respond" and case[_PREVIOUS_ACTION] == "request_clarification":
            asked_at = case[_PREVIOUS_AT]
            answered_after_hours = (at - asked_at) // HOUR
        get = data.get
        # The case id as text (the key it is kept by): ``COPY`` encodes a ``uuid.UUID`` through
        # its ``bytes`` property, a call in Python for every row.
        row = (case_id, version, action, data["from_status"], to_status, at,
               get("agency") or case[_AGENCY], get("reason"), get("closure_stage"),
               _time(get("due_at")), get("resolution"), answered_after_hours, asked_at)
        _check_transition(row)
        self.transitions.append(row)
        self._count_step(case, row)
        case[_VERSION] = version
        case[_PREVIOUS_ACTION], case[_PREVIOUS_AT] = action, at
        case[_PREVIOUS_DUE_AT], case[_PREVIOUS_AGENCY] = row[9], row[6]
        case[_STATUS] = to_status
        if action == "register" and case[_REGISTERED_AT] is None:
            case[_REGISTERED_AT] = at
        if to_status in EXAMINATION_STATUSES and case[_EXAMINATION_AT] is None:
            case[_EXAMINATION_AT] = at
        if to_status == "closed":
            case[_CLOSED_AT] = at
            case[_CLOSED_AFTER_DAYS] = (at - case[_RECEIVED_AT]) // DAY
            case[_CLOSURE_STAGE] = get("closure_stage")
            case[_CLOSURE_REASON] = get("reason")
            self.closing.append(case_id)

    def _assign(self, case: list[Any], version: int, agency: str,
                assigned_at: datetime) -> None:
        """``assign_agency``: not a step (no transition row, no step's counts), the case's
        agency and its received report's count changed, an ``assignments`` row
        (``consumer.record_transitions``)."""
        if type(agency) is not str or len(agency) > _AGENCY_LENGTH:
            raise NotApplicable(f"cases.agency: not text of at most {_AGENCY_LENGTH}")
        case_id = case[_CASE_ID]  # a case's id is its complaint's
        self.assignments.append((case_id, version, case[_STATUS], assigned_at, agency))
        before = self.assigned.get(case_id, (case[_AGENCY], ""))[0]
        self.assigned[case_id] = (before, agency)
        tally = self.tally
        # Its register and close steps counted by agency (``consumer._move_steps``).
        for at, measure in ((case[_REGISTERED_AT], _REGISTERED_AGENCY),
                            (case[_CLOSED_AT], _CLOSED_AGENCY)):
            if at is not None:
                tally.remove(tally.day(at), measure, case[_AGENCY])
                tally.add(tally.day(at), measure, agency)
        case[_AGENCY], case[_VERSION] = agency, version
        if case_id in self.complaints:  # its contact is counted already: moved now
            self._move_contact(tally.day(case[_RECEIVED_AT]), before, agency)

    def _count_step(self, case: list[Any], row: tuple[Any, ...]) -> None:
        """The increments and durations of a step (a TRANSITION_COLUMNS row) of ``case`` (as
        before the step), as ``consumer._step`` adds them."""
        (_, _, action, from_status, to_status, at, agency, reason, closure_stage, due_at, _,
         answered_after_hours, _) = row
        tally = self.tally
        add, day = tally.add, tally.day(at)
        add(day, counts.STATUS_OUT, from_status)
        if to_status != "closed":
            add(day, counts.STATUS_IN, to_status)
        if action == "register":
            add(day, counts.REGISTERED, "")
            tally.grouped[REGISTER].append((day, *case[_KIND:_RECEIVED_AT]))
        if to_status in EXAMINATION_STATUSES and case[_EXAMINATION_AT] is None:
            add(day, counts.EXAMINED, tally.year(case[_RECEIVED_AT]))
        if to_status == "closed":
            year = tally.year(case[_RECEIVED_AT])
            if closure_stage:
                tally.sample(at, histograms.DAYS_TO_CLOSE, closure_stage,
                             (at - case[_RECEIVED_AT]) // HOUR)
            add(day, counts.CLOSED, year)
            tally.grouped[CLOSE].append((day, *case[_KIND:_RECEIVED_AT]))
            add(day, counts.CLOSED_STAGE, closure_stage or "")
            add(day, counts.CLOSED_REASON, reason or "")
            if case[_EXAMINATION_AT] is not None:
                add(day, counts.CLOSED_EXAMINED, year)
        if action == "request_clarification":
            add(day, counts.CLARIFICATION_REQUESTED, agency)
            if due_at is not None:
                add(tally.day(max(at, due_at)), counts.OVERDUE_FROM, agency)
        if case[_PREVIOUS_ACTION] == "request_clarification" and (
                action == "respond" or case[_STATUS] == "awaiting_agency"):
            asked_due_at = case[_PREVIOUS_DUE_AT]
            if asked_due_at is not None:
                add(tally.day(max(case[_PREVIOUS_AT], asked_due_at, at)),
                    counts.OVERDUE_ENDED, case[_PREVIOUS_AGENCY])
            if answered_after_hours is not None:
                tally.sample(at, histograms.RESPONSE_HOURS, agency, answered_after_hours)

    def _handed_over(self, case_id: str, version: int) -> None:
        """A step of a case not open in memory: of a case closed, or of none known."""
        if case_id in self.reviving:
            raise _Deferred
        closed = self.closed.get(case_id)
        if closed is None:
            raise NotApplicable(f"case {case_id} is not known")
        if version <= closed:
            return  # applied already under another event id
        if version != closed + 1:
            raise NotApplicable(f"case {case_id} is at version {closed}, event is {version}")
        self.reviving.add(case_id)
        raise _Deferred
