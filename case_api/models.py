"""Tables of the ``cases`` schema."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, WrittenAt

SCHEMA = "cases"


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_agency_status", "reported_agency_code", "status"),
        Index("ix_cases_awaiting_completion_due", "due_at",
              postgresql_where=text("status = 'awaiting_completion'")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    tracking_number: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    substance: Mapped[str] = mapped_column(String(64))
    reported_agency_code: Mapped[str] = mapped_column(String(64))
    reported_agency_name: Mapped[str] = mapped_column(Text)
    reporter: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    summary: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    location: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    incident_date: Mapped[date | None] = mapped_column(Date)
    reported_to_agency_first: Mapped[bool | None] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer)
    assignee: Mapped[str | None] = mapped_column(String(100), index=True)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    complexity: Mapped[str | None] = mapped_column(String(16))
    closure_stage: Mapped[str | None] = mapped_column(String(16))
    closure_reason: Mapped[str | None] = mapped_column(String(64))
    maladministration: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(String(16))
    transferred_to: Mapped[str | None] = mapped_column(Text)
    last_transition_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Transition(Base):
    __tablename__ = "transitions"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(f"{SCHEMA}.cases.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[WrittenAt]
    note: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class Agency(Base):
    __tablename__ = "agencies"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    complaints: Mapped[int] = mapped_column(Integer, server_default="0")
