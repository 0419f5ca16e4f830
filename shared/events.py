"""The CloudEvents 1.0 envelope (structured mode, JSON) shared by every topic."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
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
        """The structured envelope, byte for byte what the SDK's ``JSONFormat`` writes of
        ``to_cloudevent()``, written without building the SDK's event first: that took
        longer than encoding the JSON itself, once for every complaint posted."""
        return json.dumps({
            "specversion": "1.0", "id": self.id, "source": self.source, "type": self.type,
            "subject": self.subject, "time": _rfc3339(self.time.astimezone(UTC)),
            "datacontenttype": "application/json", "partitionkey": self.subject,
            "data": self.data,
        }, default=_sdk_json).encode()

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
    def read(cls, value: bytes | str, trace: Mapping[str, str] | None = None) -> Event:
        """``from_json`` at a tenth of its cost, for reading whole logs (``metrics rebuild``,
        database-log consumers), with the trace context it travelled with.

        The envelopes the services write are checked directly (``plain_envelope``); anything
        else goes through the SDK, so what this accepts and rejects is exactly what
        ``from_json`` does.
        """
        attributes = plain_envelope(value)
        if attributes is None:
            event = cls.from_json(value)
            return event if trace is None else dataclasses.replace(event, trace=trace)
        return cls._of(attributes, trace)

    @classmethod
    def _of(cls, attributes: dict[str, Any], trace: Mapping[str, str] | None = None) -> Event:
        return cls(id=attributes["id"], type=attributes["type"], source=attributes["source"],
                   subject=attributes["subject"], time=attributes["time"].astimezone(UTC),
                   data=attributes["data"], trace=trace)

    @classmethod
    def from_json(cls, value: bytes | str) -> Event:
        raw = value.encode() if isinstance(value, str) else value
        try:
            return cls.from_cloudevent(_FORMAT.read(_as_written, raw))
        except MalformedEvent:
            raise
        except Exception as exc:
            raise MalformedEvent(f"not a CloudEvent: {type(exc).__name__}: {exc}") from exc


def _rfc3339(time: datetime) -> str:
    """A time as the SDK writes it: ISO 8601, UTC as ``Z``."""
    text = time.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _sdk_json(value: Any) -> Any:
    """What the SDK's JSON encoder makes of values JSON has no type for (times in ``data``)."""
    if isinstance(value, datetime):
        return _rfc3339(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def new_event(type_: str, *, source: str, subject: str, data: dict[str, Any],
              time: datetime | None = None) -> Event:
    return Event(type=type_, source=source, subject=subject, data=data,
                 time=time or datetime.now(UTC))


def encoded_envelope(type_: str, *, event_id: str, source: str, subject: str, time: datetime,
                     data_json: str | bytes) -> str:
    """The JSON document ``Event.to_json`` writes for these attributes (compact and UTF-8, as
    orjson writes it), of data already written as JSON text (``data_json``).

    For a writer whose envelope is only ever stored as ``jsonb`` (the outbox), and whose data
    was written as JSON anyway: the complaint posted has its answer's fields serialised once
    by pydantic instead of dumped to Python objects and encoded again by ``json``.
    """
    return orjson.dumps({
        "specversion": "1.0", "id": event_id, "source": source, "type": type_,
        "subject": subject, "time": _rfc3339(time.astimezone(UTC)),
        "datacontenttype": "application/json", "partitionkey": subject,
        "data": orjson.Fragment(data_json),
    }).decode()


def plain_envelope(value: bytes | str) -> dict[str, Any] | None:
    """The attributes of an envelope as the services write it (those of ``to_cloudevent``, a
    JSON object as data), ``time`` parsed; ``None`` for anything else, which only the SDK
    (``Event.from_json``) can tell apart from what is not an event.

    orjson reads UTF-8 only, as the SDK does, and refuses what ``json`` would let through
    (lone surrogates, ``NaN``, ``1e400``): such records take the SDK's way. It reads an
    integer beyond 64 bits as a float, though: data holding a float is read again by ``json``.
    """
    try:
        attributes = orjson.loads(value)
    except ValueError:  # orjson.JSONDecodeError, and text not UTF-8
        return None
    if not isinstance(attributes, dict):
        return None
    if isinstance(attributes.get("data"), dict) and _holds_float(attributes["data"]):
        attributes["data"] = json.loads(value.decode() if isinstance(value, bytes)
                                        else value)["data"]
    return _as_services_write(attributes)


def _as_services_write(attributes: dict[str, Any]) -> dict[str, Any] | None:
    """``attributes``, ``time`` parsed, when they are those of ``to_cloudevent``."""
    if not (attributes.keys() <= _PLAIN_ATTRIBUTES
            and attributes.get("specversion") == "1.0"
            and isinstance(attributes.get("data"), dict) and _plain_text(attributes)):
        return None
    try:
        time = datetime.fromisoformat(attributes["time"])
    except ValueError:
        return None
    if time.tzinfo is None:
        return None
    attributes["time"] = time
    return attributes


def _holds_float(value: Any) -> bool:
    """Whether a dict or list holds a float, at any depth."""
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _holds_float(item)):
            return True
    return False


def plain_fields(value: bytes | str) -> tuple[str, str, dict[str, Any]] | None:
    """The ``id``, ``type`` and ``data`` of an envelope as the services write it, exactly as
    ``plain_envelope`` reads them, at less than its cost; ``None`` for anything else, and for
    data holding a float (an integer beyond 64 bits to orjson), which ``plain_envelope`` reads
    again: the fold then asks it.

    The same checks as ``plain_envelope``'s (``tests/metrics_worker/test_replay_envelope.py``
    holds them to it), without building the attributes' dict again around a parsed ``time``,
    which the fold does not use.
    """
    try:
        attributes = orjson.loads(value)
    except ValueError:  # orjson.JSONDecodeError, and text not UTF-8
        return None
    if type(attributes) is not dict:
        return None
    get = attributes.get
    data, event_id, event_type = get("data"), get("id"), get("type")
    source, subject, time = get("source"), get("subject"), get("time")
    if not (type(data) is dict and type(event_id) is str and type(event_type) is str
            and type(source) is str and type(subject) is str and type(time) is str
            and event_id and event_type and source and subject and time
            and get("specversion") == "1.0" and attributes.keys() <= _PLAIN_ATTRIBUTES):
        return None
    # Each optional attribute absent (read as the text "-") or non-empty text.
    content_type, partition_key = get("datacontenttype", "-"), get("partitionkey", "-")
    if not (type(content_type) is str and type(partition_key) is str and content_type
            and partition_key):
        return None
    try:
        if datetime.fromisoformat(time).tzinfo is None:
            return None
    except ValueError:
        return None
    if _holds_float(data):
        return None
    return event_id, event_type, data
