"""Request and response bodies of the webhooks API."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from intake_api.webhooks.events import EventType
from shared.vocabulary import StoredText, UtcDateTime

DeliveryStatus = Literal["pending", "delivered", "failed"]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2000,
                              examples=["https://posko.example.id/aduan/webhooks"])]
    events: Annotated[list[EventType], Field(min_length=1, max_length=len(EventType))]
    description: Annotated[StoredText, Field(max_length=500)] | None = None


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[EventType]
    description: str | None
    active: bool = Field(description="false once the receiver answered 410 Gone.")
    disabled_reason: str | None
    created_at: UtcDateTime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="`whsec_` and the base64 of 32 random bytes: the key of "
                                    "every delivery's signature. Shown only in this answer.")


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt.")
    event_type: EventType
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: UtcDateTime | None
    created_at: UtcDateTime
    delivered_at: UtcDateTime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
