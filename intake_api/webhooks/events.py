"""Which webhook event types exist, who may subscribe to them, and what each one carries.

``TRIGGERS`` is the table from the bus's event types to webhook event types; a new bus event
becomes a webhook by adding a row (and its type to ``EVENT_TYPES``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from intake_api.case_changes import case_change
from intake_api.models import Complaint
from shared.auth import Role
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    Event,
)
from shared.vocabulary import utc_text


class EventType(enum.StrEnum):
    complaint_received = "complaint.received"
    complaint_status_changed = "complaint.status_changed"
    case_awaiting_agency = "case.awaiting_agency"
    attachment_added = "attachment.added"


# Who may subscribe to what: a partner hears of its own complaints, a liaison of its agency's
# cases (and of clarifications asked of it), an admin of everything.
ALLOWED: dict[Role, frozenset[EventType]] = {
    Role.partner: frozenset({EventType.complaint_received, EventType.complaint_status_changed,
                             EventType.attachment_added}),
    Role.liaison: frozenset(EventType),
    Role.admin: frozenset(EventType),
}


Render = Callable[[Event, Complaint, Role], dict[str, Any] | None]


def _complaint_received(event: Event, complaint: Complaint, role: Role) -> dict[str, Any] | None:
    data = {k: v for k, v in event.data.items() if k != "access_code"}
    reporter = data.get("reporter")
    if role is Role.liaison and isinstance(reporter, dict) and reporter.get("confidential"):
        data["reporter"] = {"confidential": True}
    return data


def _as_of(event: Event, complaint: Complaint, field: str, given: str | None) -> str | None:
    """The case's ``field`` as of the event's version, whenever the event is rendered: as the
    event states it (``case_<field>``); for an event from before it did, what this step gave,
    else the complaint's own value while that is no later than the event (a later one would
    say the case had an outcome it had not reached yet)."""
    stated = f"case_{field}"
    if stated in event.data:
        value = event.data[stated]
        return None if value is None else str(value)
    if given is not None:
        return given
    known: str | None = getattr(complaint, field)
    version = event.data.get("version")
    return known if isinstance(version, int) and complaint.case_version <= version else None


def _status_changed(event: Event, complaint: Complaint, role: Role) -> dict[str, Any] | None:
    change = case_change(event)
    outcome = {
        "status": change.status, "updated_at": _text(change.at), "due_at": _text(change.due_at),
        "closure_stage": change.closure_stage, "closure_reason": change.closure_reason,
        "resolution": _as_of(event, complaint, "resolution", change.resolution),
        "transferred_to": _as_of(event, complaint, "transferred_to", change.transferred_to),
        "closed_at": _text(change.closed_at),
    }
    return {"id": str(complaint.id), "tracking_number": complaint.tracking_number,
            "outcome": outcome, "version": change.version}


def _awaiting_agency(event: Event, complaint: Complaint, role: Role) -> dict[str, Any] | None:
    if event.data.get("to_status") != "awaiting_agency":
        return None
    return {"id": str(complaint.id), "tracking_number": complaint.tracking_number,
            "agency": agency_of(event, complaint), "due_at": event.data.get("due_at"),
            "version": event.data.get("version")}


ATTACHMENT_FIELDS = ("attachment_id", "filename", "content_type", "size", "sha256",
                     "confidential", "uploaded_at")


def _attachment_added(event: Event, complaint: Complaint, role: Role) -> dict[str, Any] | None:
    if role is Role.liaison and event.data.get("confidential"):
        return None  # a liaison may not read confidential evidence
    return {"id": str(complaint.id), "tracking_number": complaint.tracking_number,
            **{k: event.data.get(k) for k in ATTACHMENT_FIELDS}}


def _text(value: Any) -> str | None:
    return utc_text(value) if value is not None else None


@dataclass(frozen=True)
class Trigger:
    webhook_type: EventType
    render: Render


TRIGGERS: dict[str, tuple[Trigger, ...]] = {
    COMPLAINT_RECEIVED: (Trigger(EventType.complaint_received, _complaint_received),),
    CASE_TRANSITIONED: (Trigger(EventType.complaint_status_changed, _status_changed),
                        Trigger(EventType.case_awaiting_agency, _awaiting_agency)),
    COMPLAINT_ATTACHMENT_ADDED: (Trigger(EventType.attachment_added, _attachment_added),),
}


def complaint_id_of(event: Event) -> str:
    data = event.data
    return str(data.get("complaint_id") or data.get("case_id") or data.get("id")
               or event.subject)


def agency_of(event: Event, complaint: Complaint) -> str:
    """The agency that had the case when ``event`` happened: the one a case's event names
    (``assign_agency``'s names the agency it gives), the one a complaint was received for, the
    one the complaint showed here when a file was added (``consumer.hand_over_attachments``
    tells the new agency of files added before this service applied its assignment); else
    (an event from before attachments named it) the complaint's as this service knows it."""
    named = event.data.get("agency")
    if event.type in (CASE_OPENED, CASE_TRANSITIONED) and isinstance(named, str) and named:
        return named
    stamped = event.data.get("reported_agency_code")
    if event.type == COMPLAINT_ATTACHMENT_ADDED and isinstance(stamped, str) and stamped:
        return stamped
    reported = event.data.get("reported_agency")
    if event.type == COMPLAINT_RECEIVED and isinstance(reported, dict) \
            and isinstance(reported.get("code"), str):
        return str(reported["code"])
    return complaint.reported_agency_code
