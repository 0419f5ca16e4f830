"""Tables of the ``intake`` schema."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, WrittenAt

SCHEMA = "intake"


class Complaint(Base):
    __tablename__ = "complaints"
    __table_args__ = (
        Index("uq_complaints_submitter_external_reference", "submitted_by", "external_reference",
              unique=True, postgresql_where=text("external_reference IS NOT NULL")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    tracking_number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    substance: Mapped[str] = mapped_column(String(64))
    reporter: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reported_agency_code: Mapped[str] = mapped_column(String(64), index=True)
    reported_agency_name: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    incident_date: Mapped[date | None] = mapped_column(Date)
    reported_to_agency_first: Mapped[bool | None] = mapped_column(Boolean)
    location: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    external_reference: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_by: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    case_version: Mapped[int] = mapped_column(Integer, server_default="0")
    # The case's outcome as its events tell it (intake never reads the case service's tables).
    case_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closure_stage: Mapped[str | None] = mapped_column(String(16))
    closure_reason: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(String(16))
    transferred_to: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # SHA-256 of the complainant's access code; the code itself is never stored.
    access_code_hash: Mapped[str | None] = mapped_column(String(64))


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    caller: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[WrittenAt]


class Attachment(Base):
    """Evidence attached to a complaint: what is known of the file (its bytes are kept apart)."""

    __tablename__ = "attachments"
    __table_args__ = (
        Index("ix_attachments_complaint_seq", "complaint_id", "seq"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    complaint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.complaints.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    confidential: Mapped[bool] = mapped_column(Boolean)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    uploaded_by: Mapped[str] = mapped_column(String(100))


class AttachmentChunk(Base):
    """The bytes of an attachment in the PostgreSQL store, in pieces of at most 1 MiB.

    Pieces let a download stream without holding a whole file in memory.
    """

    __tablename__ = "attachment_chunks"
    __table_args__ = (
        PrimaryKeyConstraint("attachment_id", "seq"),
        {"schema": SCHEMA},
    )

    attachment_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.attachments.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


# The width of an Open311 client's own identifiers (address_id, device_id).
OPEN311_ID_CHARS = 255


class Open311Request(Base):
    """What an Open311 GeoReport v2 client sent beyond the complaint: coordinates and media."""

    __tablename__ = "open311_requests"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    complaint_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey(f"{SCHEMA}.complaints.id", ondelete="CASCADE"),
        primary_key=True)
    lat: Mapped[float | None] = mapped_column(Double)
    long: Mapped[float | None] = mapped_column(Double)
    address_string: Mapped[str | None] = mapped_column(Text)
    address_id: Mapped[str | None] = mapped_column(String(OPEN311_ID_CHARS))
    media_url: Mapped[str | None] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(OPEN311_ID_CHARS))
