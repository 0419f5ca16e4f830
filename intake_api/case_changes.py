"""What a case event says of the case, as this service keeps it on the complaint."""

from __future__ import annotations

from datetime import datetime

from intake_api.repository import CaseChange
from shared.bus import UnknownEventType
from shared.events import CASE_OPENED, CASE_TRANSITIONED, Event


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
