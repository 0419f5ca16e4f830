"""Request and response bodies of the case API."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from case_api.workflow import (
    PUBLIC_ACTIONS,
    ActionName,
    ClosureStage,
    Complexity,
    Reason,
    Resolution,
    Status,
)
from shared.text import is_blank
from shared.vocabulary import (
    AGENCY_CODE,
    Channel,
    Kind,
    Maladministration,
    RequiredText,
    StoredText,
    Substance,
    UtcDateTime,
    UtcInput,
)

BLANK_IS_ABSENT = ("Text of whitespace or invisible characters only (zero-width spaces, "
                   "the byte-order mark) counts as absent: 422 where the action requires it.")


class AgencyAssigned(BaseModel):
    """The agency ``assign_agency`` gives a case, checked as a complaint's ``reported_agency``."""

    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=AGENCY_CODE, description=(
        "Not `unassigned`, the agency the case leaves."))]
    name: Annotated[RequiredText, Field(max_length=300)]


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Annotated[str, Field(json_schema_extra={"enum": [a.value for a in PUBLIC_ACTIONS]},
                                 description="One of the workflow's actions.")]
    note: Annotated[StoredText, Field(max_length=20_000)] | None = Field(
        default=None, description=BLANK_IS_ABSENT)
    reason: Reason | None = None
    assignee: Annotated[StoredText, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description=BLANK_IS_ABSENT)
    due_at: UtcInput | None = Field(
        default=None, description="Replaces the action's default due date; must be later than "
                                  "the transition's effective time.")
    resolution: Resolution | None = None
    maladministration: Maladministration | None = None
    transferred_to: Annotated[StoredText, Field(min_length=1, max_length=300)] | None = Field(
        default=None, description=BLANK_IS_ABSENT)
    complexity: Complexity | None = None
    reported_agency: AgencyAssigned | None = Field(
        default=None, description="assign_agency only: the agency the case is reported against "
                                  "from now on.")
    effective_at: UtcInput | None = Field(
        default=None, description="Back-dating for imports: admin only; not before the case's "
                                  "last transition nor in the future.")

    @field_validator("note", "assignee", "transferred_to")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        # As for a complaint's reporter name: text of whitespace or invisible characters only
        # says nothing, so it counts as absent (422 where the action requires it).
        return None if value is not None and is_blank(value) else value


class AgencyRef(BaseModel):
    """An agency by its code and the name the case knows it by."""

    code: str
    name: str


class HistoryEntry(BaseModel):
    action: str
    from_status: Status
    to_status: Status
    actor: str
    role: str
    at: UtcDateTime
    note: str | None = Field(description="What the actor wrote (null for analysts).")
    reason: Reason | None
    details: dict[str, Any] = Field(default_factory=dict)


class CaseSummary(BaseModel):
    """A case's own fields, without its workflow details and history."""

    id: uuid.UUID
    tracking_number: str
    kind: str
    status: Status
    version: int
    channel: str
    substance: str
    reported_agency: AgencyRef
    reporter: dict[str, Any] | None
    summary: str | None = Field(description="The complaint's summary (null for analysts).")
    description: str | None = Field(description="The complaint's account (null for analysts).")
    incident_date: date | None
    location: dict[str, Any] | None = Field(description="regency and place (null for analysts).")
    reported_to_agency_first: bool | None
    received_at: UtcDateTime
    assignee: str | None
    due_at: UtcDateTime | None
    overdue: bool
    closure_stage: ClosureStage | None
    closure_reason: Reason | None
    maladministration: Maladministration | None


class CaseOut(CaseSummary):
    """A case with its workflow details and history: the one shape of a case (API.md), in a
    list as on its own."""

    complexity: Complexity | None
    resolution: Resolution | None
    transferred_to: str | None
    allowed_actions: list[str] = Field(description="Actions the caller may take now.")
    history: list[HistoryEntry]


class CasePage(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None


class AgencyOut(BaseModel):
    code: str
    name: str
    open_cases: int
    total_cases: int
    complaints: int


class AgencyName(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[RequiredText, Field(max_length=300, description=(
        "The agency's name as the office writes it; complaints never change it afterwards."))]


class AgencyPage(BaseModel):
    items: list[AgencyOut]
    next_cursor: str | None


class CaseOpened(BaseModel):
    """Data of ``case.opened.v1``."""

    case_id: uuid.UUID = Field(description="Equal to the complaint's id.")
    kind: Kind
    status: Status = Field(description="received, or registered for own_initiative.")
    version: int = Field(description="1: the case's first version.")
    agency: str = Field(description="The reported agency's code.")
    substance: Substance
    channel: Channel
    received_at: UtcDateTime


class CaseTransitioned(BaseModel):
    """Data of ``case.transitioned.v1``: one step of the workflow (notes stay internal)."""

    case_id: uuid.UUID
    action: ActionName = Field(description="`expire` is the system closing an incomplete report.")
    from_status: Status
    to_status: Status
    actor: str = Field(description="The token name that acted, or `system`.")
    role: str
    at: UtcDateTime = Field(description="The effective time of the transition.")
    version: int = Field(description="The case's version after this transition.")
    reason: Reason | None
    closure_stage: ClosureStage | None = Field(description="Set when the case closes.")
    maladministration: Maladministration | None
    due_at: UtcDateTime | None = Field(description="What the office waits for is due then.")
    resolution: Resolution | None = Field(description="The resolution this step gave.")
    transferred_to: str | None = Field(description="Where this step transferred the case.")
    # A step's own fields say what it changed; these say what the case was after it, so that a
    # reader of one event (a webhook, a replay) tells the outcome as of its version.
    case_resolution: Resolution | None = Field(
        default=None, description="The case's resolution after this step: the last one a step "
                                  "gave, null when none has yet.")
    case_transferred_to: str | None = Field(
        default=None, description="Where the case was transferred, once it was (null before).")
    agency: str = Field(description="The reported agency's code.")
    reported_agency: AgencyRef | None = Field(
        default=None, description="Only on `assign_agency` (absent otherwise): the agency the "
                                  "case is reported against from now on, as `agency` says.")
