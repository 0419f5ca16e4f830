"""Open311 service requests as aduan complaints: reading a client's form, answering its queries."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from intake_api.models import OPEN311_ID_CHARS, Complaint, Open311Request
from intake_api.open311.formats import Open311Error
from intake_api.open311.services import BY_CODE
from intake_api.schemas import REPORTER_NAME_CHARS, ComplaintCreate, Outcome
from intake_api.service import outcome_of
from shared.problems import validation_message
from shared.text import is_blank, is_storable
from shared.vocabulary import AGENCY_CODE, UNASSIGNED_AGENCY_CODE, in_utc, utc_text

# Reports whose agency the client did not name wait here until an assistant assigns one
# (the case action ``assign_agency``).
UNASSIGNED_AGENCY = {"code": UNASSIGNED_AGENCY_CODE, "name": "Belum ditentukan (unassigned)"}
SERVICE_NOTICE = ("Laporan diterima Ombudsman RI dan akan diverifikasi. "
                  "The report was received by the Ombudsman and will be verified.")
# GeoReport v2: without dates, a query covers 90 days; at most 1,000 requests are returned.
DEFAULT_SPAN = timedelta(days=90)
MAX_RESULTS = 1000
MAX_IDS = 200
MAX_URL = 2048
SUMMARY_CHARS = 300
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})")


@dataclass(frozen=True)
class NewRequest:
    complaint: ComplaintCreate
    lat: float | None
    long: float | None
    address_string: str | None
    address_id: str | None
    media_url: str | None
    device_id: str | None
    # False when the client gave an agency's code without its name (``attribute[agency_name]``):
    # the complaint then carries the code as the name until ``naming_agency`` says otherwise.
    agency_named: bool = True

    def naming_agency(self, name: str) -> NewRequest:
        """The same request with the reported agency under ``name`` (the name it is known by)."""
        agency = self.complaint.reported_agency.model_copy(update={"name": name})
        return dataclasses.replace(self, agency_named=True, complaint=self.complaint.model_copy(
            update={"reported_agency": agency}))

    def details(self, complaint: Complaint) -> Open311Request:
        return Open311Request(complaint_id=complaint.id, lat=self.lat, long=self.long,
                              address_string=self.address_string, address_id=self.address_id,
                              media_url=self.media_url, device_id=self.device_id)


def _text(form: Mapping[str, str], name: str) -> str | None:
    """A form field's text, or None when it is absent or shows nothing (whitespace and
    invisible characters only, as the JSON API counts a blank reporter name)."""
    value = form.get(name)
    return None if value is None or is_blank(value) else value.strip()


def _coordinate(form: Mapping[str, str], name: str, bound: float,
                errors: list[str]) -> float | None:
    raw = _text(form, name)
    if raw is None:
        return None
    # ASCII decimals only: ``float`` would also read full-width and other scripts' digits,
    # underscores and exponents, none of which a GeoReport client writes.
    if not _DECIMAL.fullmatch(raw):
        errors.append(f"{name} must be a decimal number (WGS84 degrees), not {raw[:40]!r}")
        return None
    value = float(raw)
    if not math.isfinite(value) or not -bound <= value <= bound:
        errors.append(f"{name} must be between -{bound:g} and {bound:g}")
        return None
    return value


def _summary(description: str) -> str:
    flat = " ".join(description.split())
    return flat if len(flat) <= SUMMARY_CHARS else flat[:SUMMARY_CHARS - 1] + "…"


def _agency(form: Mapping[str, str], errors: list[str]) -> dict[str, str]:
    code = _text(form, "attribute[agency]")
    if code is None:
        return UNASSIGNED_AGENCY
    if not re.fullmatch(AGENCY_CODE, code):
        errors.append("attribute[agency] must be an agency code: lowercase letters, digits and "
                      "hyphens, 2..64 characters")
        return UNASSIGNED_AGENCY
    return {"code": code, "name": _text(form, "attribute[agency_name]") or code}


def _media_url(form: Mapping[str, str], errors: list[str]) -> str | None:
    url = _text(form, "media_url")
    if url is not None and (len(url) > MAX_URL or not re.match(r"^https?://[^\s/]+", url)):
        errors.append(f"media_url must be an http(s) URL of at most {MAX_URL} characters")
        return None
    return url


def read_new_request(form: Mapping[str, str]) -> NewRequest:
    """The complaint an Open311 ``POST requests`` form describes; 400 with every problem found."""
    # Every field at once, stored or not, each named once: PostgreSQL text cannot hold NUL.
    errors = [f"{name[:64]}: must be text without NUL characters"
              for name, value in form.items() if not is_storable(value)]
    if errors:
        raise Open311Error(400, *errors)
    code = _text(form, "service_code")
    if code is None:
        errors.append("service_code was not provided")
    elif code not in BY_CODE:
        errors.append(f"service_code {code[:64]!r} is not a known service (see services.xml)")
    description = _text(form, "description")
    if description is None:
        errors.append("description was not provided")
    lat = _coordinate(form, "lat", 90, errors)
    long = _coordinate(form, "long", 180, errors)
    if (_text(form, "lat") is None) != (_text(form, "long") is None):
        errors.append("lat and long must be given together")
    address = _text(form, "address_string")
    address_id = _text(form, "address_id")
    # As wide as its column: a longer one is the client's error, not the database's.
    if address_id is not None and len(address_id) > OPEN311_ID_CHARS:
        errors.append(f"address_id: must be at most {OPEN311_ID_CHARS} characters")
    if _text(form, "lat") is None and address is None and address_id is None:
        errors.append("lat/long, address_string, or address_id was not provided")
    agency = _agency(form, errors)
    media_url = _media_url(form, errors)
    if errors:
        raise Open311Error(400, *errors)
    assert description is not None
    first, last = _text(form, "first_name"), _text(form, "last_name")
    email, phone = _text(form, "email"), _text(form, "phone")
    # The law asks who reports; a client that sends no name leaves verification to ask for it.
    # Its email or phone stands in for the name only where a name may be that long: an error on
    # the name is then always about a name the client sent (its contact's own errors name it).
    stand_in = next((c for c in (email, phone) if c and len(c) <= REPORTER_NAME_CHARS), None)
    name = " ".join(p for p in (first, last) if p) or stand_in or "Pelapor tanpa nama"
    body: dict[str, Any] = {
        "kind": "report", "channel": "website", "substance": code,
        "reporter": {"name": name, "email": email, "phone": phone},
        "reported_agency": agency,
        "summary": _summary(description), "description": description,
        "location": {"place": address[:SUMMARY_CHARS]} if address else None,
    }
    try:
        complaint = ComplaintCreate.model_validate(body)
    except ValidationError as exc:
        raise Open311Error(400, *[_described(e) for e in exc.errors()]) from None
    return NewRequest(complaint=complaint, lat=lat, long=long, address_string=address,
                      address_id=address_id, media_url=media_url,
                      device_id=(_text(form, "device_id") or "")[:OPEN311_ID_CHARS] or None,
                      agency_named=(agency is UNASSIGNED_AGENCY
                                    or _text(form, "attribute[agency_name]") is not None))


# Which form field an error on a complaint field came from.
_FORM_FIELDS = {"reporter.name": "first_name/last_name", "reporter.email": "email",
                "reporter.phone": "phone", "description": "description",
                "summary": "description", "location.place": "address_string",
                "reported_agency.name": "attribute[agency_name]"}


def _described(error: Any) -> str:
    dotted = ".".join(str(part) for part in error.get("loc", ()))
    return f"{_FORM_FIELDS.get(dotted, dotted)}: {validation_message(error)}"


@dataclass(frozen=True)
class Query:
    ids: Sequence[str]
    codes: Sequence[str]
    start: datetime | None
    end: datetime | None
    statuses: Sequence[str]


def _list(params: Mapping[str, str], name: str) -> list[str]:
    return [v.strip() for v in (params.get(name) or "").split(",") if v.strip()]


def _date(params: Mapping[str, str], name: str, errors: list[str]) -> datetime | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        errors.append(f"{name} must be a W3C date-time with a time zone, "
                      "e.g. 2022-03-01T00:00:00+07:00")
        return None
    try:
        return in_utc(value)
    except ValueError as exc:
        errors.append(f"{name} {exc}")
        return None


def read_query(params: Mapping[str, str], *, now: datetime) -> Query:
    errors: list[str] = []
    ids, codes, statuses = (_list(params, n) for n in ("service_request_id", "service_code",
                                                       "status"))
    if len(ids) > MAX_IDS:
        errors.append(f"at most {MAX_IDS} service_request_id values")
    errors += [f"service_code {c[:64]!r} is not a known service" for c in codes
               if c not in BY_CODE]
    errors += [f"status must be open or closed, not {s[:20]!r}" for s in statuses
               if s not in {"open", "closed"}]
    start, end = _date(params, "start_date", errors), _date(params, "end_date", errors)
    if errors:
        raise Open311Error(400, *errors)
    if not ids and start is None and end is None:
        start = now - DEFAULT_SPAN
    return Query(ids=ids, codes=codes, start=start, end=end, statuses=statuses)


def _time(value: datetime | None) -> str | None:
    return utc_text(value) if value is not None else None


def as_record(complaint: Complaint, details: Open311Request | None) -> dict[str, Any]:
    """A complaint as a GeoReport v2 service request, every element present (empty if unknown)."""
    outcome = outcome_of(complaint)
    closed = complaint.status == "closed"
    service = BY_CODE.get(complaint.substance)
    place = (complaint.location or {}).get("place")
    return {
        "service_request_id": complaint.tracking_number,
        "status": "closed" if closed else "open",
        "status_notes": status_notes(outcome) if outcome else complaint.status,
        "service_name": service.name if service else complaint.substance,
        "service_code": complaint.substance,
        "description": complaint.description,
        "agency_responsible": complaint.reported_agency_name,
        "service_notice": SERVICE_NOTICE,
        "requested_datetime": utc_text(complaint.received_at),
        "updated_datetime": _time(outcome.updated_at if outcome else complaint.received_at),
        # What the office waits for next is due then; a closed request expects nothing.
        "expected_datetime": _time(outcome.due_at if outcome and not closed else None),
        "address": (details.address_string if details else None) or place,
        "address_id": details.address_id if details else None,
        "zipcode": None,
        "lat": details.lat if details else None,
        "long": details.long if details else None,
        "media_url": details.media_url if details else None,
    }


def status_notes(outcome: Outcome) -> str:
    """Open311 knows only open and closed: the notes say how the case stands in the office.

    Closed: the closure reason (and where it went, when transferred). Open: the agency's answer
    once it gave one, otherwise the case's status.
    """
    if outcome.status == "closed":
        reason = outcome.closure_reason or "closed"
        return f"{reason}: {outcome.transferred_to}" if outcome.transferred_to else reason
    return outcome.resolution or outcome.status
