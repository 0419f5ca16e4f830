"""Infrastructure tables every service keeps in its own schema.

- ``outbox`` (services that publish: intake and cases, not metrics): events written in the same
  transaction as the change they describe. With Kafka a relay publishes and stamps them; without
  Kafka the outbox *is* the log consumers read, in the order of ``position`` (given after commit;
  ``id`` is only the order rows were written in).
- ``processed_events``: ``PRIMARY KEY (consumer, event_id)``, written in the same transaction as
  the effect of an event, so redelivery never doubles an effect.
- ``log_positions``: a consumer's position in a database-backed log.
- ``dead_letters``: database-backed counterpart of a dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


@dataclass(frozen=True)
class ConsumerTables:
    """What a service that reads events keeps."""

    schema: str
    processed_events: Table
    log_positions: Table
    dead_letters: Table


@dataclass(frozen=True)
class EventTables(ConsumerTables):
    """What a service that also writes events keeps: besides, its outbox."""

    outbox: Table


def consumer_tables(metadata: MetaData, schema: str) -> ConsumerTables:
    processed = Table(
        "processed_events", metadata,
        Column("consumer", String(100), nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
        schema=schema,
    )
    positions = Table(
        "log_positions", metadata,
        Column("consumer", String(100), nullable=False),
        Column("log", String(200), nullable=False),
        Column("position", BigInteger, nullable=False),
        PrimaryKeyConstraint("consumer", "log"),
        schema=schema,
    )
    dead = Table(
        "dead_letters", metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("consumer", String(100), nullable=False),
        Column("log", String(200), nullable=False),
        Column("event_id", String(64)),
        Column("record", Text, nullable=False),
        Column("error", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )
    return ConsumerTables(schema, processed, positions, dead)


def event_tables(metadata: MetaData, schema: str) -> EventTables:
    consumed = consumer_tables(metadata, schema)
    outbox = Table(
        "outbox", metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        # The log order, given after commit by ``shared.outbox.sequence`` (see there why).
        Column("position", BigInteger, unique=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("envelope", JSONB, nullable=False),
        # ``traceparent``/``tracestate`` of the request that wrote the row (shared.tracing).
        Column("trace_context", JSONB),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index(f"ix_{schema}_outbox_unpublished", "id",
              postgresql_where=text("published_at IS NULL")),
        Index(f"ix_{schema}_outbox_unsequenced", "id",
              postgresql_where=text("position IS NULL")),
        schema=schema,
    )
    return EventTables(schema, consumed.processed_events, consumed.log_positions,
                       consumed.dead_letters, outbox)


def _registry() -> tuple[EventTables, EventTables, ConsumerTables]:
    from shared.db import Base

    return (event_tables(Base.metadata, "intake"), event_tables(Base.metadata, "cases"),
            consumer_tables(Base.metadata, "metrics"))


INTAKE_EVENTS, CASE_EVENTS, METRICS_EVENTS = _registry()
