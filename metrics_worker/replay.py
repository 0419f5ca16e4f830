"""The projection's facts from a whole log at once, for ``aduan metrics rebuild``.

``metrics_worker.consumer`` applies one event at a time against the database; a rebuild has
every event in log order in hand, so it keeps the cases in memory and folds the log into the
rows of ``metrics.contacts``, ``metrics.cases`` and ``metrics.transitions`` exactly as the
projection would leave them, to be written with ``COPY``. The aggregate tables are then
derived from those rows in SQL (``metrics_worker.aggregates``).

What the live consumer would not apply is set aside with the reason its dead letter would
carry: an unknown event type, an event of a case not known (yet), a version gap, a record that
is not an event, a field missing or too long for its column. The log's order per key (one
partition per case, one position per event) is what makes "not known yet" final here: the event
that was missing would have come before.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, Table

from metrics_worker.consumer import contact_values, opening_values
from metrics_worker.models import CaseFact, Contact, TransitionFact
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    Event,
)
from shared.vocabulary import EXAMINATION_STATUSES

DAY, HOUR = timedelta(days=1), timedelta(hours=1)


class NotApplicable(Exception):
    """What the live consumer would dead-letter (after retrying, for a case not known)."""


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _columns(table: Any) -> list[str]:
    return [c.name for c in table.__table__.columns]


CONTACT_COLUMNS = _columns(Contact)
CASE_COLUMNS = _columns(CaseFact)
TRANSITION_COLUMNS = _columns(TransitionFact)

# What the fold writes: a column added to a fact table stops the import here until the fold
# fills it, rather than a rebuild leaving it empty where the live projection fills it.
_WRITTEN = {
    "contacts": ["complaint_id", "kind", "channel", "substance", "agency", "received_at", "place"],
    "cases": sorted(["case_id", "kind", "channel", "substance", "agency", "received_at",
                     "opened_status", "status", "version", "registered_at", "examination_at",
                     "closed_at", "closure_stage", "closure_reason", "closed_after_days"]),
    "transitions": sorted(["case_id", "version", "action", "from_status", "to_status", "at",
                           "agency", "reason", "closure_stage", "due_at", "resolution",
                           "answered_after_hours", "asked_at"]),
}
if (_WRITTEN["contacts"] != CONTACT_COLUMNS or _WRITTEN["cases"] != sorted(CASE_COLUMNS)
        or _WRITTEN["transitions"] != sorted(TRANSITION_COLUMNS)):
    raise RuntimeError("a metrics fact table's columns changed: teach metrics_worker/replay.py "
                       "(the set-based rebuild) how the projection fills them")
_transition_row = operator.itemgetter(*TRANSITION_COLUMNS)


def _length_check(table: Table, columns: list[str]) -> Callable[[tuple[Any, ...]], None]:
    """Raises ``NotApplicable`` for a row the database would refuse as too long."""
    limits = []
    for i, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, String) and kind.length:
            limits.append((i, name, kind.length))

    def check(row: tuple[Any, ...]) -> None:
        for i, name, length in limits:
            value = row[i]
            if value is not None and len(value) > length:
                raise NotApplicable(f"{table.name}.{name}: value longer than {length}")
    return check


_check_contact = _length_check(Contact.__table__, CONTACT_COLUMNS)  # type: ignore[arg-type]
_check_case = _length_check(CaseFact.__table__, CASE_COLUMNS)  # type: ignore[arg-type]
_check_transition = _length_check(TransitionFact.__table__,  # type: ignore[arg-type]
                                  TRANSITION_COLUMNS)


@dataclass
class _Case:
    row: list[Any]  # in CASE_COLUMNS order
    version: int
    agency: str
    received_at: datetime
    previous: tuple[str, datetime] | None = None  # action and time of the last transition


_CASE = {name: i for i, name in enumerate(CASE_COLUMNS)}


@dataclass
class Replay:
    """The log folded, event by event in log order, into the read model's rows."""

    # Rows not yet taken (``take``): contacts, transitions, and the ids of the events applied
    # (or found to be no-ops), for the processed-event guard.
    contacts: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    processed: set[str] = field(default_factory=set)
    cases: dict[uuid.UUID, _Case] = field(default_factory=dict)  # final only at the log's end
    complaints: set[uuid.UUID] = field(default_factory=set)

    def apply(self, event: Event) -> None:
        """Folds one event in; raises ``NotApplicable`` (nothing changed) where the live
        consumer would dead-letter it."""
        if event.id in self.processed:
            return  # redelivered: the processed-event table skips it
        try:
            if event.type == COMPLAINT_RECEIVED:
                self._contact(event.data)
            elif event.type == CASE_OPENED:
                self._opened(event.data)
            elif event.type == CASE_TRANSITIONED:
                self._transition(event.data)
            elif event.type != COMPLAINT_ATTACHMENT_ADDED:
                raise NotApplicable(f"unknown event type: {event.type}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NotApplicable(f"{type(exc).__name__}: {exc}") from exc
        self.processed.add(event.id)
        self.fresh.append(event.id)

    def take(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]:
        """The contacts, transitions and processed event ids folded since the last take
        (final already: later events never change them)."""
        taken = self.contacts, self.transitions, self.fresh
        self.contacts, self.transitions, self.fresh = [], [], []
        return taken

    def case_rows(self) -> list[list[Any]]:
        return [case.row for case in self.cases.values()]

    def _contact(self, data: dict[str, Any]) -> None:
        values = contact_values(data)
        complaint_id = values["complaint_id"]
        row = tuple(values[name] for name in CONTACT_COLUMNS)
        _check_contact(row)
        if complaint_id in self.complaints:
            return  # the same complaint under another event id: counted already
        self.complaints.add(complaint_id)
        self.contacts.append(row)

    def _opened(self, data: dict[str, Any]) -> None:
        values = opening_values(data)
        case_id, at = values["case_id"], values["received_at"]
        row = [values.get(name) for name in CASE_COLUMNS]
        _check_case(tuple(row))
        if case_id in self.cases:
            return
        self.cases[case_id] = _Case(row, values["version"], data["agency"], at)

    def _transition(self, data: dict[str, Any]) -> None:
        case_id = uuid.UUID(data["case_id"])
        version = int(data["version"])
        case = self.cases.get(case_id)
        if case is None:
            raise NotApplicable(f"case {case_id} is not known")
        if version <= case.version:
            return  # applied already under another event id
        if version != case.version + 1:
            raise NotApplicable(f"case {case_id} is at version {case.version}, "
                                f"event is {version}")
        at = datetime.fromisoformat(data["at"])
        to_status = data["to_status"]
        agency = data.get("agency") or case.agency
        answered_after_hours = asked_at = None
        if data["action"] == "respond" and case.previous is not None \
                and case.previous[0] == "request_clarification":
            asked_at = case.previous[1]
            answered_after_hours = (at - asked_at) // HOUR
        values = {"case_id": case_id, "version": version, "action": data["action"],
                  "from_status": data["from_status"], "to_status": to_status, "at": at,
                  "agency": agency, "reason": data.get("reason"),
                  "closure_stage": data.get("closure_stage"),
                  "due_at": _time(data.get("due_at")), "resolution": data.get("resolution"),
                  "answered_after_hours": answered_after_hours, "asked_at": asked_at}
        row: tuple[Any, ...] = _transition_row(values)
        _check_transition(row)
        self.transitions.append(row)
        self._advance(case, data, version, at)

    def _advance(self, case: _Case, data: dict[str, Any], version: int, at: datetime) -> None:
        row, to_status = case.row, data["to_status"]
        case.version = row[_CASE["version"]] = version
        case.previous = (data["action"], at)
        row[_CASE["status"]] = to_status
        if data["action"] == "register" and row[_CASE["registered_at"]] is None:
            row[_CASE["registered_at"]] = at
        if to_status in EXAMINATION_STATUSES and row[_CASE["examination_at"]] is None:
            row[_CASE["examination_at"]] = at
        if to_status == "closed":
            row[_CASE["closed_at"]] = at
            row[_CASE["closed_after_days"]] = (at - case.received_at) // DAY
            row[_CASE["closure_stage"]] = data.get("closure_stage")
            row[_CASE["closure_reason"]] = data.get("reason")
