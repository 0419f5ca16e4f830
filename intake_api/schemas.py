"""Request and response bodies of the intake API."""

from __future__ import annotations

import enum
import uuid
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from shared.text import is_blank
from shared.vocabulary import (
    AGENCY_CODE,
    RECORDED,
    CaseStatus,
    Channel,
    DateInput,
    Kind,
    RequiredText,
    StoredText,
    Substance,
    UtcDateTime,
    UtcInput,
)

Short = Annotated[StoredText, Field(max_length=300)]


class Strict(BaseModel):
    # Unknown fields are refused; so are booleans sent as "yes" or 1 (StrictBool on each such
    # field), since the JSON itself says true or false. Dates and times are strings in JSON:
    # DateInput and UtcInput refuse numbers.
    model_config = ConfigDict(extra="forbid")


REPORTER_NAME_CHARS = 200


class Reporter(Strict):
    name: Annotated[StoredText, Field(max_length=REPORTER_NAME_CHARS)] | None = Field(
        default=None, description="Required unless kind is own_initiative; a name of "
                                  "whitespace or invisible characters counts as absent.")
    email: Annotated[StoredText, Field(max_length=254)] | None = None
    phone: Annotated[StoredText, Field(max_length=50)] | None = None
    identity_number: Annotated[StoredText, Field(max_length=50)] | None = None
    address: Annotated[StoredText, Field(max_length=500)] | None = None
    confidential: StrictBool = False

    @field_validator("name")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        return None if value is not None and is_blank(value) else value


class ReportedAgency(Strict):
    code: Annotated[str, Field(pattern=AGENCY_CODE)]
    name: Annotated[RequiredText, Field(max_length=300)]


class Location(Strict):
    regency: Short | None = None
    place: Short | None = None


class ComplaintCreate(Strict):
    kind: Kind
    channel: Channel
    substance: Substance
    reporter: Reporter | None = None
    reported_agency: ReportedAgency
    summary: Annotated[RequiredText, Field(min_length=1, max_length=300)]
    description: Annotated[RequiredText, Field(min_length=1, max_length=20_000)]
    incident_date: DateInput | None = None
    reported_to_agency_first: StrictBool | None = None
    location: Location | None = None
    external_reference: Annotated[StoredText, Field(min_length=1, max_length=255)] | None = None
    received_at: UtcInput | None = Field(
        default=None, description="Back-dating for imports of historical records: admin only."
    )


class ComplaintStatus(enum.StrEnum):
    """What a complaint's ``status`` may say: its case's status, or ``recorded`` for kinds that
    open no case."""

    received = CaseStatus.received.value
    awaiting_completion = CaseStatus.awaiting_completion.value
    registered = CaseStatus.registered.value
    in_examination = CaseStatus.in_examination.value
    awaiting_agency = CaseStatus.awaiting_agency.value
    agency_responded = CaseStatus.agency_responded.value
    corrective_action = CaseStatus.corrective_action.value
    closed = CaseStatus.closed.value
    recorded = RECORDED


class Outcome(BaseModel):
    """How the complaint's case stands, as its events tell it; notes and assignees stay internal."""

    status: str
    updated_at: UtcDateTime | None = Field(description="When the case last changed.")
    due_at: UtcDateTime | None = Field(description="What the office waits for is due then.")
    closure_stage: str | None
    closure_reason: str | None
    resolution: str | None = Field(description="The agency's answer: resolved, explained or "
                                               "disputed.")
    transferred_to: str | None
    closed_at: UtcDateTime | None


class ComplaintOut(BaseModel):
    id: uuid.UUID
    tracking_number: str
    kind: Kind
    channel: Channel
    substance: Substance
    reporter: Reporter | None
    reported_agency: ReportedAgency
    summary: str
    description: str
    incident_date: date | None
    reported_to_agency_first: bool | None
    location: Location | None
    external_reference: str | None
    status: str = Field(description="The case's status (`received` first); `recorded` for kinds "
                                    "that open no case. Follows the case, eventually consistent.")
    received_at: UtcDateTime
    submitted_by: str
    outcome: Outcome | None = Field(description="The case's outcome, following the case "
                                                "(eventually consistent); null for kinds that "
                                                "open no case.")


class ComplaintCreated(ComplaintOut):
    access_code: str = Field(description="The complainant's secret for `POST /public/status`. "
                                         "Shown only here and in idempotent replays of this "
                                         "answer; the complaint keeps only its hash (the "
                                         "replay record, with the rest of the answer, goes "
                                         "when the Idempotency-Key expires).")


class ComplaintPage(BaseModel):
    items: list[ComplaintOut]
    next_cursor: str | None


class AttachmentOut(BaseModel):
    id: uuid.UUID
    filename: str = Field(description="The client's file name, for display only: no directory "
                                      "parts, no control characters.")
    content_type: str = Field(description="Decided from the file's bytes: application/pdf, "
                                          "image/jpeg, image/png or image/webp.")
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="SHA-256 of the bytes, lowercase hex; also the download's "
                                    "ETag.")
    confidential: bool = Field(description="Hidden from liaison officers.")
    uploaded_at: UtcDateTime
    uploaded_by: str


class AttachmentPage(BaseModel):
    items: list[AttachmentOut]
    next_cursor: str | None


class AttachmentAdded(BaseModel):
    """Data of ``complaint.attachment_added.v1``: what is known about the file, never its bytes."""

    complaint_id: uuid.UUID
    tracking_number: str
    attachment_id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str
    confidential: bool
    uploaded_at: UtcDateTime
    uploaded_by: str
    submitted_by: str = Field(description="The complaint's submitter.")
    reported_agency_code: str


class StatusQuery(Strict):
    # Checked as stored text: a NUL or a lone surrogate would fail in the database or the hash.
    tracking_number: Annotated[StoredText, Field(min_length=1, max_length=32)]
    access_code: Annotated[StoredText, Field(min_length=1, max_length=64)]


class PublicStatus(BaseModel):
    """What the complainant learns with the access code: no personal data, no notes."""

    tracking_number: str
    kind: Kind
    status: str
    received_at: UtcDateTime
    updated_at: UtcDateTime | None
    due_at: UtcDateTime | None
    closure_stage: str | None
    closure_reason: str | None
    resolution: str | None
