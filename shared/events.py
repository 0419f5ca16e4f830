"""The CloudEvents 1.0 envelope (structured mode, JSON) shared by every topic."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

TYPE_PREFIX = "id.go.ombudsman.aduan."
COMPLAINTS_TOPIC = "aduan.complaints.v1"
CASES_TOPIC = "aduan.cases.v1"

COMPLAINT_RECEIVED = TYPE_PREFIX + "complaint.received.v1"
COMPLAINT_ATTACHMENT_ADDED = TYPE_PREFIX + "complaint.attachment_added.v1"
CASE_OPENED = TYPE_PREFIX + "case.opened.v1"
CASE_TRANSITIONED = TYPE_PREFIX + "case.transitioned.v1"

CONTENT_TYPE = "application/cloudevents+json"
_FORMAT = JSONFormat()


class MalformedEvent(ValueError):
    """A record that is not a CloudEvent this system can read."""


# Left out, the SDK makes up ``id`` (a fresh uuid4) and ``time`` (now) on reading: redelivered,
# such an event would be a new event each time and be applied again.
_REQUIRED = ("specversion", "id", "source", "type", "subject", "time")
# What ``Event.read`` checks itself: the attributes ``to_cloudevent`` writes, all of them text.
_PLAIN_REQUIRED = ("id", "source", "type", "subject", "time")
_PLAIN_OPTIONAL = ("datacontenttype", "partitionkey")
_PLAIN_ATTRIBUTES = frozenset({"specversion", "data", *_PLAIN_REQUIRED, *_PLAIN_OPTIONAL})


def _plain_text(attributes: dict[str, Any]) -> bool:
    """Every required attribute, and each optional one given, is non-empty text."""
    for name in _PLAIN_REQUIRED:
        value = attributes.get(name)
        if not value or type(value) is not str:
            return False
    for name in _PLAIN_OPTIONAL:
        if name in attributes:
            value = attributes[name]
            if not value or type(value) is not str:
                return False
    return True


def _as_written(attributes: dict[str, Any], data: Any) -> CloudEvent:
    missing = [a for a in _REQUIRED if not attributes.get(a)]
    if missing:
        raise MalformedEvent(f"event lacks {', '.join(missing)}")
    return CloudEvent(attributes, data)


@dataclass(frozen=True)
class Event:
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # The W3C trace context it was written under (from the Kafka headers or the outbox row);
    # not part of the envelope, so not of the event's identity either.
    trace: Mapping[str, str] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return self.subject

    def to_cloudevent(self) -> CloudEvent:
        return CloudEvent(
            attributes={
                "specversion": "1.0",
                "id": self.id,
                "source": self.source,
                "type": self.type,
                "subject": self.subject,
                "time": self.time.astimezone(UTC),
                "datacontenttype": "application/json",
                "partitionkey": self.subject,
            },
            data=self.data,
        )

    def to_json(self) -> bytes:
        return bytes(_FORMAT.write(self.to_cloudevent()))

    def envelope(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.to_json())
        return result

    def to_kafka(self) -> ce_kafka.KafkaMessage:
        return ce_kafka.to_structured(self.to_cloudevent(), _FORMAT)

    @classmethod
    def from_cloudevent(cls, event: Any) -> Event:
        attributes = event.get_attributes()
        data = event.get_data()
        if not isinstance(data, dict):
            raise MalformedEvent("event data is not a JSON object")
        missing = [a for a in ("id", "type", "source", "subject", "time") if not attributes.get(a)]
        if missing:
            raise MalformedEvent(f"event lacks {', '.join(missing)}")
        time = attributes["time"]
        if not isinstance(time, datetime):
            raise MalformedEvent("event time is not a timestamp")
        return cls(
            id=str(attributes["id"]),
            type=str(attributes["type"]),
            source=str(attributes["source"]),
            subject=str(attributes["subject"]),
            time=time.astimezone(UTC),
            data=data,
        )

    @classmethod
    def read(cls, value: bytes | str) -> Event:
        """``from_json`` at a tenth of its cost, for reading whole logs (``metrics rebuild``,
        consumers).

        The envelopes the services write (the attributes of ``to_cloudevent`` and a JSON object
        as data) are checked directly; anything else goes through the SDK, so what this accepts
        and rejects is exactly what ``from_json`` does.
        """
        try:  # text as the SDK reads it: UTF-8 (a UnicodeDecodeError is a ValueError)
            attributes = json.loads(value.decode() if isinstance(value, bytes) else value)
        except ValueError:
            attributes = None
        return cls._plain(attributes) or cls.from_json(value)

    @classmethod
    def from_envelope(cls, envelope: Any) -> Event:
        """``read`` for an envelope already decoded from JSON (an outbox row's ``jsonb``)."""
        return cls._plain(envelope) or cls.from_json(json.dumps(envelope,
                                                                     ensure_ascii=False))

    @classmethod
    def _plain(cls, attributes: Any) -> Event | None:
        """The event, when ``attributes`` are exactly what ``to_cloudevent`` writes."""
        if not (isinstance(attributes, dict) and attributes.keys() <= _PLAIN_ATTRIBUTES
                and attributes.get("specversion") == "1.0"
                and isinstance(data := attributes.get("data"), dict)
                and _plain_text(attributes)):
            return None
        try:
            time = datetime.fromisoformat(attributes["time"])
        except ValueError:
            return None
        if time.tzinfo is None:
            return None
        return cls(id=attributes["id"], type=attributes["type"], source=attributes["source"],
                   subject=attributes["subject"], time=time.astimezone(UTC), data=data)

    @classmethod
    def from_json(cls, value: bytes | str) -> Event:
        raw = value.encode() if isinstance(value, str) else value
        try:
            return cls.from_cloudevent(_FORMAT.read(_as_written, raw))
        except MalformedEvent:
            raise
        except Exception as exc:
            raise MalformedEvent(f"not a CloudEvent: {type(exc).__name__}: {exc}") from exc


def new_event(type_: str, *, source: str, subject: str, data: dict[str, Any],
              time: datetime | None = None) -> Event:
    return Event(type=type_, source=source, subject=subject, data=data,
                 time=time or datetime.now(UTC))
