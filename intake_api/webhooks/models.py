"""Tables of the webhooks, in the intake service's schema."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column, validates

from intake_api.webhooks.targets import origin_of
from shared.db import Base, WrittenAt

SCHEMA = "intake"


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    # The owner's role and agency when subscribing decide which events reach it.
    role: Mapped[str] = mapped_column(String(20))
    agency_code: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    # ``targets.origin_of(url)``, set with the URL: the dispatcher shares its slots out by it,
    # and its due-deliveries query reads the column rather than parsing each row's URL.
    origin: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    description: Mapped[str | None] = mapped_column(Text)
    # Kept to sign every delivery; shown to the owner only once.
    secret: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[WrittenAt]

    @validates("url")
    def _url_sets_origin(self, key: str, url: str) -> str:
        self.origin = origin_of(url)
        return url


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # One delivery per subscription and event: a redelivered event never doubles it.
        UniqueConstraint("subscription_id", "event_id", "event_type"),
        Index("ix_webhook_deliveries_due", "next_attempt_at",
              postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_subscription_created", "subscription_id", "created_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    # The body exactly as sent, the same bytes on every attempt.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Retries stop a set time after this instant: the first failed attempt, or a manual retry.
    retrying_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # A dispatcher holds the delivery until then; after a crash another one takes it over.
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[WrittenAt]
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
