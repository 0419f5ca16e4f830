"""Response bodies of the metrics API (METRICS.md)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from shared.vocabulary import Kind, UtcDateTime


class PeriodOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", serialization_alias="from")
    to: date


class PeakMonth(BaseModel):
    month: str
    received: int
    top_substance: str | None


class ExaminationOut(BaseModel):
    handled: int
    handled_by_received_year: dict[str, int]
    closed: int


class TargetFigure(BaseModel):
    target: int
    actual: int
    rate: float


class TargetsOut(BaseModel):
    closures: TargetFigure | None
    examination_closures: TargetFigure | None


class LiaisonFigures(BaseModel):
    requests: int
    responses: int
    median_response_hours: float | None
    overdue_at_end: int


class Summary(BaseModel):
    period: PeriodOut
    as_of: UtcDateTime | None = Field(description=(
        "Effective time of the newest event applied, whatever the period: a contact's or "
        "case's receipt, a transition's time, an agency assigned (`assign_agency`); the "
        "figures are complete up to it. `null` before any event."))
    contacts: int
    contacts_by_kind: dict[Kind, int]
    received: int
    received_by_month: dict[str, int]
    received_by_channel: dict[str, int]
    received_by_substance: dict[str, int]
    received_by_agency: dict[str, int]
    peak_month: PeakMonth | None = Field(description=(
        "The month with most received reports (earliest on a tie) and its most frequent "
        "substance (alphabetically first on a tie); `null` when the period has no received "
        "report."))
    on_the_spot_locations: int
    registered: int
    handled: int
    carried_over: int
    carried_over_by_year: dict[str, int]
    closed: int
    closed_by_stage: dict[str, int]
    closed_by_reason: dict[str, int]
    examination: ExaminationOut
    closure_rate: float
    targets: TargetsOut
    backlog_at_end: dict[str, int]
    liaison: dict[str, LiaisonFigures]
    median_days_to_close: dict[str, float]


class MonthlyRow(BaseModel):
    month: str
    group: str
    contacts: int
    received: int
    registered: int
    closed: int


class MonthlyOut(BaseModel):
    rows: list[MonthlyRow]




def _whole(value: object) -> object:
    """JSON has numbers, not integers: 600.0 and 6e2 are the count 600, as JSON Schema's
    ``integer`` (the OpenAPI document's) counts them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A count in JSON is a whole number: "600", 600.5 or true is refused, not taken as 600 or 1.
NonNegative = Annotated[StrictInt, BeforeValidator(_whole), Field(ge=0, le=10_000_000)]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    closures: NonNegative | None = None
    examination_closures: NonNegative | None = None


class TargetOut(BaseModel):
    period: str
    closures: int | None
    examination_closures: int | None
    updated_at: UtcDateTime
    updated_by: str
