"""The ``metrics`` schema: a read model built only from events, rebuildable from offset 0."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from metrics_worker.histograms import HOURS_TO_CLOSE
from shared.db import Base

SCHEMA = "metrics"


class Contact(Base):
    """One row per intake of any kind (``complaint.received``)."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_received_at", "received_at"),
        Index("ix_contacts_on_the_spot", "received_at",
              postgresql_where=text("channel = 'on_the_spot'")),
        # Walked place by place (a skip scan), so distinct places cost what the places do.
        Index("ix_contacts_on_the_spot_place", "place", "received_at",
              postgresql_where=text("channel = 'on_the_spot' AND place IS NOT NULL")),
        {"schema": SCHEMA},
    )

    complaint_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    substance: Mapped[str] = mapped_column(String(64))
    agency: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    place: Mapped[str | None] = mapped_column(Text)  # trimmed, lower-cased on_the_spot place


class CaseFact(Base):
    """One row per case (``case.opened``), kept current by ``case.transitioned``."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_metrics_cases_received_at", "received_at"),
        Index("ix_metrics_cases_closed_at", "closed_at"),
        # By whole hours to close: a median's one hour of delay is read from the index alone
        # (received_at carried along).
        Index("ix_metrics_cases_hours_to_close", "closure_stage", text(HOURS_TO_CLOSE),
              "closed_at", postgresql_include=["received_at"],
              postgresql_where=text("closed_after_days IS NOT NULL")),
        {"schema": SCHEMA},
    )

    case_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    substance: Mapped[str] = mapped_column(String(64))
    agency: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    opened_status: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    registered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    examination_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closure_stage: Mapped[str | None] = mapped_column(String(16))
    closure_reason: Mapped[str | None] = mapped_column(String(64))
    # Whole days from received to closed (the days-to-close histogram's bucket).
    closed_after_days: Mapped[int | None] = mapped_column(Integer)


class TransitionFact(Base):
    """Every ``case.transitioned``, for figures that need the state at a moment."""

    __tablename__ = "transitions"
    __table_args__ = (
        Index("ix_metrics_transitions_at", "at"),
        Index("ix_metrics_transitions_action_at", "action", "at"),
        Index("ix_metrics_transitions_clarifications", "agency", "at",
              postgresql_where=text("action = 'request_clarification'")),
        # asked_at carried along: a median's one bucket is read from the index alone.
        Index("ix_metrics_transitions_response_hours", "agency", "answered_after_hours", "at",
              postgresql_include=["asked_at"],
              postgresql_where=text("answered_after_hours IS NOT NULL")),
        {"schema": SCHEMA},
    )

    case_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    agency: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(64))
    closure_stage: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution: Mapped[str | None] = mapped_column(String(16))
    # On a ``respond`` that answers a clarification request: whole hours since the request
    # (its hour in the response-hours histogram, and the key of the values read for a median).
    answered_after_hours: Mapped[int | None] = mapped_column(Integer)
    # On that same ``respond``: when the request it answers was made.
    asked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AssignmentFact(Base):
    """Every ``assign_agency``: a case given the agency it was filed without. Not a step of
    the workflow (no transition row, so no figure over the steps sees it), but an event
    applied: ``as_of`` and ``bi_transitions`` read it."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_metrics_assignments_at", "at"),
        {"schema": SCHEMA},
    )

    case_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(32))  # the case's, which it keeps
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    agency: Mapped[str] = mapped_column(String(64))  # the agency given


class Target(Base):
    __tablename__ = "targets"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    closures: Mapped[int | None] = mapped_column(Integer)
    examination_closures: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now(), onupdate=func.now())
    updated_by: Mapped[str] = mapped_column(String(100))


class DailyCount(Base):
    """Per local day, how much a measure grew for a key (see migration 0003)."""

    __tablename__ = "daily_counts"
    __table_args__ = (
        Index("ix_daily_counts_measure_day", "measure", "day"),
        {"schema": SCHEMA},
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)  # an on-the-spot place, too
    n: Mapped[int] = mapped_column(BigInteger)



class PeriodCount(Base):
    """The daily counts summed by month (grain ``m``) and by year (``y``), kept with them."""

    __tablename__ = "period_counts"
    __table_args__ = (
        # Reads of a few measures over many months or years (the summary's running totals
        # and places, the monthly figures): only their rows, not every measure's.
        Index("ix_period_counts_measure", "grain", "measure", "start", "key"),
        {"schema": SCHEMA},
    )

    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    start: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)  # an on-the-spot place, too
    n: Mapped[int] = mapped_column(BigInteger)


class DurationHistogram(Base):
    """How many durations fell in each bucket of one day of delay, per day, month and year.

    ``days_to_close`` (key: closure stage, by the local day of closing) and ``response_hours``
    (key: agency, by the local day of the response): a period's median is found by summing a
    few rows and reading only the cases of the one hour of delay it falls in.
    """

    __tablename__ = "duration_histograms"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    start: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
    # The bucket's n by hour of the bucket (24): which hour holds a median.
    sub_counts: Mapped[list[int]] = mapped_column(ARRAY(Integer))


class Office(Base):
    """The office's time zone, as the metrics service runs with it (read by the BI views)."""

    __tablename__ = "office"
    __table_args__ = (
        CheckConstraint("id", name="office_single_row"),
        {"schema": SCHEMA},
    )

    id: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    timezone: Mapped[str] = mapped_column(Text, server_default=text("'Asia/Jakarta'::text"))
