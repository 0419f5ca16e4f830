"""The event contract as an AsyncAPI 3.0 document, built from the models the services publish.

Served at ``GET /asyncapi.json``; kept in the repository as ``docs/asyncapi.yaml``. Regenerate
the file after changing an event's model::

    python -m services.asyncapi > docs/asyncapi.yaml

``tests/services/test_asyncapi.py`` fails while the committed file differs from what this builds.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from case_api.schemas import CaseOpened, CaseTransitioned
from case_api.service import SOURCE as CASE_SOURCE
from intake_api.schemas import AttachmentAdded, ComplaintOut
from intake_api.service import SOURCE as INTAKE_SOURCE
from shared.bus import Subscription
from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    CASES_TOPIC,
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    COMPLAINTS_TOPIC,
    CONTENT_TYPE,
    TYPE_PREFIX,
)

SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class EventType:
    event_type: str
    topic: str
    source: str
    model: type[BaseModel]
    summary: str

    @property
    def name(self) -> str:
        """``complaint.received.v1`` → ``complaintReceivedV1``."""
        words = self.event_type.removeprefix(TYPE_PREFIX).replace("_", ".").split(".")
        return words[0] + "".join(w.capitalize() for w in words[1:])


EVENT_TYPES: tuple[EventType, ...] = (
    EventType(COMPLAINT_RECEIVED, COMPLAINTS_TOPIC, INTAKE_SOURCE, ComplaintOut,
              "A complaint was recorded: the full complaint as the API returns it."),
    EventType(COMPLAINT_ATTACHMENT_ADDED, COMPLAINTS_TOPIC, INTAKE_SOURCE, AttachmentAdded,
              "Evidence was attached to a complaint (metadata only, never the bytes)."),
    EventType(CASE_OPENED, CASES_TOPIC, CASE_SOURCE, CaseOpened,
              "A case was opened for a complaint of a case-opening kind."),
    EventType(CASE_TRANSITIONED, CASES_TOPIC, CASE_SOURCE, CaseTransitioned,
              "A case moved through the workflow. `assign_agency` is not a step: the case stays "
              "where it is (from_status = to_status) and is reported against the agency in "
              "`reported_agency` from now on (a report filed under `unassigned`)."),
)
APPS = ("intake_api", "case_api", "metrics_worker")


def _consumers() -> tuple[Subscription, ...]:
    """Every consumer group of the apps (each has a dead-letter topic per topic it reads).

    Found by looking, not listed by hand, so a new consumer appears in the document (and the
    committed copy goes stale until it is regenerated).
    """
    found: dict[str, Subscription] = {}
    for app in APPS:
        package = importlib.import_module(app)
        for module in pkgutil.walk_packages(package.__path__, f"{app}."):
            for value in vars(importlib.import_module(module.name)).values():
                if isinstance(value, Subscription):
                    found[value.consumer] = value
    return tuple(found[name] for name in sorted(found))


CONSUMERS = _consumers()
TOPICS = {COMPLAINTS_TOPIC: "complaints", CASES_TOPIC: "cases"}

HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["content-type"],
    "properties": {
        "content-type": {"type": "string", "const": CONTENT_TYPE,
                         "description": "CloudEvents structured mode: the value is the whole "
                                        "event."},
        "traceparent": {"type": "string",
                        "description": "W3C Trace Context of the request that caused the event, "
                                       "kept through the outbox."},
        "tracestate": {"type": "string", "description": "W3C Trace Context vendor state."},
    },
}
DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original record's headers, plus where it came from and why it was "
                   "dead-lettered.",
    "required": ["error", "original-topic", "original-partition", "original-offset",
                 "consumer"],
    "properties": {
        **HEADERS["properties"],
        "error": {"type": "string", "description": "Why the record could not be applied "
                                                   "(at most 4,000 bytes)."},
        "original-topic": {"type": "string"},
        "original-partition": {"type": "string", "pattern": "^[0-9]+$"},
        "original-offset": {"type": "string", "pattern": "^[0-9]+$"},
        "consumer": {"type": "string", "description": "The consumer group."},
    },
}


def _envelope(event: EventType) -> dict[str, Any]:
    """The CloudEvents 1.0 envelope of one event type, its ``data`` the event's model."""
    return {
        "title": f"{event.model.__name__}Event",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time",
                     "datacontenttype", "partitionkey", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1, "description": "Unique per event."},
            "source": {"const": event.source},
            "type": {"const": event.event_type},
            "subject": {"type": "string", "format": "uuid",
                        "description": "The complaint's id (equal to its case's id)."},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "partitionkey": {"type": "string", "format": "uuid",
                             "description": "Equal to the record key and the subject."},
            "data": {"$ref": REF.format(model=event.model.__name__)},
        },
    }


def _message(event: EventType) -> dict[str, Any]:
    return {
        "name": event.event_type,
        "title": event.event_type.removeprefix(TYPE_PREFIX),
        "summary": event.summary,
        "contentType": CONTENT_TYPE,
        "headers": HEADERS,
        "payload": {"schemaFormat": SCHEMA_FORMAT,
                    "schema": {"$ref": REF.format(model=f"{event.model.__name__}Event")}},
        "bindings": {"kafka": {
            "key": {"type": "string", "format": "uuid",
                    "description": "The complaint/case id: one case's events stay in order on "
                                   "one partition."},
            "bindingVersion": "0.5.0",
        }},
    }


def _schemas() -> dict[str, Any]:
    models = [(event.model, "serialization") for event in EVENT_TYPES]
    _, top = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for event in EVENT_TYPES:
        schemas[f"{event.model.__name__}Event"] = _envelope(event)
    return dict(sorted(schemas.items()))


def _channels() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for topic, key in TOPICS.items():
        messages = {e.name: {"$ref": f"#/components/messages/{e.name}"}
                    for e in EVENT_TYPES if e.topic == topic}
        channels[key] = {
            "address": "{prefix}" + topic,
            "title": topic,
            "description": f"CloudEvents of {key}, keyed by the complaint/case id.",
            "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
            "messages": messages,
        }
        for consumer in CONSUMERS:
            if topic not in consumer.topics:
                continue
            channels[f"{key}DeadLetters_{consumer.consumer}"] = {
                "address": "{prefix}" + f"{topic}.dlq.{consumer.consumer}",
                "title": f"{topic}.dlq.{consumer.consumer}",
                "description": f"Records of {topic} that consumer group {consumer.consumer} "
                               "could not parse or apply after retries, as they were, with "
                               "their original headers and the error.",
                "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
                "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
            }
    return channels


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for event in EVENT_TYPES:
        channel = TOPICS[event.topic]
        operations[f"publish_{event.name}"] = {
            "action": "send",
            "title": f"{event.source} publishes {event.event_type.removeprefix(TYPE_PREFIX)}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{event.name}"}],
        }
    for consumer in CONSUMERS:
        for topic in consumer.topics:
            channel = TOPICS[topic]
            operations[f"consume_{channel}_{consumer.consumer}"] = {
                "action": "receive",
                "title": f"Consumer group {consumer.consumer} reads {topic}",
                "channel": {"$ref": f"#/channels/{channel}"},
                "bindings": {"kafka": {"groupId": {"type": "string",
                                                   "const": consumer.consumer},
                                       "bindingVersion": "0.5.0"}},
            }
            operations[f"deadLetter_{channel}_{consumer.consumer}"] = {
                "action": "send",
                "title": f"Consumer group {consumer.consumer} dead-letters records of {topic}",
                "channel": {"$ref": f"#/channels/{channel}DeadLetters_{consumer.consumer}"},
            }
    return operations


@cache
def document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "aduan events",
            "version": "1.0.0",
            "description": "The events the aduan services exchange through Kafka (or, without "
                           "Kafka, through the database log, with the same envelopes). Each "
                           "record's value is a CloudEvents 1.0 event in structured mode; its key "
                           "is the complaint/case id. Topic names carry a configurable prefix "
                           "(`ADUAN_TOPIC_PREFIX`, empty by default).",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"kafka": {"host": "localhost:9092", "protocol": "kafka",
                              "description": "`ADUAN_KAFKA_BOOTSTRAP_SERVERS`"}},
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "parameters": {"prefix": {"description": "`ADUAN_TOPIC_PREFIX`", "default": ""}},
            "messages": {
                **{event.name: _message(event) for event in EVENT_TYPES},
                "deadLetter": {
                    "name": "deadLetter",
                    "summary": "A record a consumer group gave up on, byte for byte as it was.",
                    "contentType": CONTENT_TYPE,
                    "headers": DEAD_LETTER_HEADERS,
                    "payload": {"description": "The original record value (usually one of the "
                                               "events of the topic; possibly unparsable)."},
                },
            },
            "schemas": _schemas(),
        },
    }


def as_yaml() -> str:
    # Round-tripped through JSON so the YAML holds plain types only.
    plain = json.loads(json.dumps(document()))
    text: str = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100)
    return text


router = APIRouter(tags=["health"])


@router.get("/asyncapi.json", summary="The event contract (AsyncAPI 3.0)")
async def asyncapi() -> JSONResponse:
    return JSONResponse(document())


if __name__ == "__main__":
    sys.stdout.write(as_yaml())
