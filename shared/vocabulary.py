"""The domain's shared words (DOMAIN.md): intake kinds, channels, substances, and the case
statuses that travel in events, so every service reads them the same way."""

from __future__ import annotations

import enum
import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, PlainSerializer

from shared.text import is_blank, is_storable

# A reported agency's code (API.md): what partners, liaison tokens and the agency registry share.
AGENCY_CODE = r"^[a-z0-9][a-z0-9-]{1,63}$"
# The agency of a report filed without one (Open311), until an assistant assigns one.
UNASSIGNED_AGENCY_CODE = "unassigned"


class Kind(enum.StrEnum):
    report = "report"
    rapid_response = "rapid_response"
    own_initiative = "own_initiative"
    consultation = "consultation"
    copy_letter = "copy_letter"


CASE_OPENING_KINDS = frozenset({Kind.report, Kind.rapid_response, Kind.own_initiative})


class CaseStatus(enum.StrEnum):
    received = "received"
    awaiting_completion = "awaiting_completion"
    registered = "registered"
    in_examination = "in_examination"
    awaiting_agency = "awaiting_agency"
    agency_responded = "agency_responded"
    corrective_action = "corrective_action"
    closed = "closed"


EXAMINATION_STATUSES = frozenset({CaseStatus.in_examination, CaseStatus.awaiting_agency,
                                  CaseStatus.agency_responded, CaseStatus.corrective_action})
# An intake that opens no case (consultation, copy letter) keeps this status.
RECORDED = "recorded"


def opening_status(kind: Kind) -> CaseStatus | None:
    """The status a case of this kind opens in; None when the kind opens no case.

    Own-initiative cases are the office's own: registered from the start, with no verification.
    """
    if kind not in CASE_OPENING_KINDS:
        return None
    return CaseStatus.registered if kind is Kind.own_initiative else CaseStatus.received


class Channel(enum.StrEnum):
    walk_in = "walk_in"
    letter = "letter"
    email = "email"
    phone = "phone"
    whatsapp = "whatsapp"
    website = "website"
    mobile_app = "mobile_app"
    social_media = "social_media"
    on_the_spot = "on_the_spot"
    complaint_post = "complaint_post"
    national_portal = "national_portal"
    partner_api = "partner_api"


class Substance(enum.StrEnum):
    electricity = "electricity"
    land = "land"
    police = "police"
    civil_service = "civil_service"
    education = "education"
    health = "health"
    social_security = "social_security"
    population_administration = "population_administration"
    local_government = "local_government"
    transport_infrastructure = "transport_infrastructure"
    water = "water"
    civil_political_rights = "civil_political_rights"
    other = "other"


class Maladministration(enum.StrEnum):
    undue_delay = "undue_delay"
    not_providing_service = "not_providing_service"
    incompetence = "incompetence"
    abuse_of_authority = "abuse_of_authority"
    procedural_deviation = "procedural_deviation"
    demanding_payment = "demanding_payment"
    improper_conduct = "improper_conduct"
    partiality = "partiality"
    discrimination = "discrimination"
    conflict_of_interest = "conflict_of_interest"
    neglect_of_legal_duty = "neglect_of_legal_duty"


def _storable(value: str) -> str:
    # Refused as invalid input here instead of failing in the database driver later.
    if not is_storable(value):
        raise ValueError("must be Unicode text without NUL characters or lone surrogates")
    return value


def _not_blank(value: str) -> str:
    if is_blank(value):
        raise ValueError("must not be blank (whitespace or invisible characters only)")
    return value


StoredText = Annotated[str, AfterValidator(_storable)]
RequiredText = Annotated[str, AfterValidator(_storable), AfterValidator(_not_blank)]


def utc_text(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as every timestamp the services send (API.md conventions)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDateTime = Annotated[datetime, PlainSerializer(utc_text, return_type=str)]


def in_utc(value: datetime) -> datetime:
    """An aware time moved to UTC; ValueError when UTC cannot hold it.

    Times are stored and sent in UTC. Turning them there at the edge keeps PostgreSQL (whose
    offsets stop short of RFC 3339's ±23:59) and asyncpg (whose encoder overflows past the
    calendar's ends: year 1 east of Greenwich, year 9999 west of it) from ever seeing them.
    """
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1..9999 once turned to UTC") from None


def _timestamp_text(value: object) -> object:
    # JSON carries a timestamp as a string: a number (Unix seconds, which pydantic's lax mode
    # would take) is no RFC 3339 date-time.
    if isinstance(value, str | datetime):
        return value
    raise ValueError("must be an RFC 3339 date-time string with an offset")


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date_text(value: object) -> object:
    # Only the calendar date itself (``2022-03-02``, ASCII digits): not a Unix number, not a
    # date-time, each of which pydantic's lax mode would read as some date.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return value
    raise ValueError("must be a date string YYYY-MM-DD")


# A timestamp a client sends: RFC 3339 with an offset, held in UTC from here on.
UtcInput = Annotated[AwareDatetime, BeforeValidator(_timestamp_text), AfterValidator(in_utc)]
# A calendar date a client sends (RFC 3339 full-date).
DateInput = Annotated[date, BeforeValidator(_date_text)]
