"""The event bus: at-least-once delivery made exactly-once in effect by the processed-event table.

A consumer is a ``Subscription`` (its name, the topics it reads, a handler run in the effect's
transaction). A ``ConsumerRunner`` delivers a subscription's events; there are two, with one
contract suite (``tests/shared/test_bus.py``) run against both:

- ``shared.bus.kafka.KafkaConsumerRunner``: a consumer group; offsets committed only after the
  database commit; unreadable or failing records go to ``<topic>.dlq.<consumer>``.
- ``shared.bus.database_log.DatabaseLogRunner``: without Kafka, the outbox tables are the log;
  the position moves in the effect's transaction; dead letters go to the ``dead_letters`` table.

``shared.runtime.Runtime.consume(subscription)`` picks the runner the settings call for.
"""

from __future__ import annotations

from typing import Protocol

from shared.bus.applier import (
    TRANSIENT,
    Applier,
    DeadLetter,
    Handler,
    Parked,
    RetryLater,
    RetryPolicy,
    Subscription,
    UnknownEventType,
    apply_once,
)
from shared.bus.database_log import DatabaseLogRunner
from shared.bus.kafka import KafkaConsumerRunner


class ConsumerRunner(Protocol):
    """Delivers one subscription's events to its handler until cancelled."""

    subscription: Subscription
    applier: Applier

    async def run(self) -> None: ...


__all__ = [
    "TRANSIENT",
    "Applier",
    "ConsumerRunner",
    "DatabaseLogRunner",
    "DeadLetter",
    "Handler",
    "KafkaConsumerRunner",
    "Parked",
    "RetryLater",
    "RetryPolicy",
    "Subscription",
    "UnknownEventType",
    "apply_once",
]
