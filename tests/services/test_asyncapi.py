"""The AsyncAPI document: committed as generated, served, and true of every event emitted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from services.asyncapi import EVENT_TYPES, as_yaml, document
from shared.clock import ShiftedClock
from tests.case_api.helpers import (
    AGENCY,
    Tokens,
    drive,
    ok,
    open_case,
    post_complaint,
    wait_case,
)
from tests.shared.kafka_topics import read_topic
from tests.support import BackingServices, bearer, eventually, query, running_app

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
REGENERATE = "python -m services.asyncapi > docs/asyncapi.yaml"


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == as_yaml(), f"docs/asyncapi.yaml is stale: run {REGENERATE}"
    regenerated = subprocess.run([sys.executable, "-m", "services.asyncapi"], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
    assert regenerated.stdout == COMMITTED.read_text()


def test_the_document_names_topics_types_keys_and_dead_letter_topics() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"{prefix}aduan.complaints.v1", "{prefix}aduan.cases.v1"} <= addresses
    assert {"{prefix}aduan.complaints.v1.dlq.aduan-case",
            "{prefix}aduan.complaints.v1.dlq.aduan-metrics",
            "{prefix}aduan.cases.v1.dlq.aduan-metrics",
            "{prefix}aduan.cases.v1.dlq.aduan-intake-status"} <= addresses
    messages = doc["components"]["messages"]
    types = {m["name"] for m in messages.values()}
    assert {f"id.go.ombudsman.aduan.{t}" for t in (
        "complaint.received.v1", "complaint.attachment_added.v1", "case.opened.v1",
        "case.transitioned.v1")} <= types
    for event in EVENT_TYPES:
        message = messages[event.name]
        assert message["contentType"] == "application/cloudevents+json"
        assert message["headers"]["properties"]["content-type"]["const"] == message["contentType"]
        assert "traceparent" in message["headers"]["properties"]
        assert message["bindings"]["kafka"]["key"]["format"] == "uuid"
    # Every $ref in the document resolves.
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node: Any = doc
        for step in ref.split("/"):
            node = node[step]


def validator_for(event_type: str) -> jsonschema.protocols.Validator:
    doc = document()
    [event] = [e for e in EVENT_TYPES if e.event_type == event_type]
    message = doc["components"]["messages"][event.name]
    schema = {**message["payload"]["schema"], "components": doc["components"]}
    cls = jsonschema.validators.validator_for({"$schema":
                                               "https://json-schema.org/draft/2020-12/schema"})
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


async def test_every_event_of_a_full_workflow_matches_the_document(
    services: BackingServices,
) -> None:
    tokens = await Tokens.create(services)
    clock = ShiftedClock()
    async with running_app(services, clock=clock, expiry_interval_seconds=0.2) as client:
        examined = await open_case(client, tokens, reporter={"name": "Siti", "confidential": True})
        await client.post(f"/v1/complaints/{examined['id']}/attachments",
                          files={"file": ("a.pdf", b"%PDF-1.7\n%%EOF\n", "application/pdf")},
                          data={"confidential": "true"}, headers=bearer(tokens.partner))
        await drive(client, tokens.assistant, examined["id"], [
            {"action": "request_completion", "note": "KTP?"},
            {"action": "complete", "note": "KTP diterima"},
            {"action": "register", "complexity": "medium"},
            {"action": "start_examination", "assignee": "asisten.pemeriksaan.1"},
            {"action": "request_clarification", "note": "Mohon penjelasan"}])
        await ok(client, tokens.liaison, examined["id"], "respond", note="Sudah",
                 resolution="disputed")
        await drive(client, tokens.assistant, examined["id"], [
            {"action": "find_maladministration", "maladministration": "undue_delay"},
            {"action": "close", "reason": "recommendation_issued"}])
        for action, fields in [("reject", {"reason": "duplicate"}),
                               ("transfer", {"transferred_to": "Ombudsman RI Pusat"}),
                               ("withdraw", {"note": "dicabut"})]:
            case = await open_case(client, tokens, substance="land")
            await ok(client, tokens.assistant, case["id"], action, **fields)
        await open_case(client, tokens, kind="own_initiative", channel="on_the_spot")
        await post_complaint(client, tokens, kind="consultation")
        lapsing = await open_case(client, tokens, kind="rapid_response")
        await ok(client, tokens.assistant, lapsing["id"], "request_completion", note="?")
        clock.offset = timedelta(days=40)

        async def expired() -> None:
            case = await wait_case(client, tokens.assistant, lapsing["id"])
            assert case["status"] == "closed"

        await eventually(expired)

    rows = await query(services.database_url,
                       "SELECT key, envelope FROM intake.outbox UNION ALL "
                       "SELECT key, envelope FROM cases.outbox")
    emitted = [(row["key"], json.loads(row["envelope"])) for row in rows]
    seen: Counter[str] = Counter()
    actions: set[str] = set()
    for key, envelope in emitted:
        errors = sorted(validator_for(envelope["type"]).iter_errors(envelope), key=str)
        assert not errors, (envelope["type"], [e.message for e in errors[:3]])
        assert key == envelope["subject"] == envelope["partitionkey"]
        seen[envelope["type"]] += 1
        if envelope["type"].endswith("case.transitioned.v1"):
            actions.add(envelope["data"]["action"])
    assert set(seen) == {e.event_type for e in EVENT_TYPES}
    assert actions == {"request_completion", "complete", "register", "start_examination",
                       "request_clarification", "respond", "find_maladministration", "close",
                       "reject", "transfer", "withdraw", "expire"}
    assert AGENCY in {e["data"].get("agency") for _, e in emitted}


def test_a_wrong_event_is_refused_by_the_document() -> None:
    envelope: dict[str, Any] = {"specversion": "1.0", "id": "x", "source": "/aduan/case",
                "type": "id.go.ombudsman.aduan.case.opened.v1",
                "subject": "3f0c2b1e-8c7e-4a52-9a55-3d1f4f2b8a10",
                "time": "2022-03-03T02:15:00Z", "datacontenttype": "application/json",
                "partitionkey": "3f0c2b1e-8c7e-4a52-9a55-3d1f4f2b8a10",
                "data": {"case_id": "3f0c2b1e-8c7e-4a52-9a55-3d1f4f2b8a10", "kind": "report",
                         "status": "received", "version": 1, "agency": "pln-uiw-babel",
                         "substance": "electricity", "channel": "letter",
                         "received_at": "2022-03-03T02:15:00Z"}}
    validator = validator_for(envelope["type"])
    validator.validate(envelope)
    for broken in ({**envelope, "data": {**envelope["data"], "status": "lost"}},
                   {**envelope, "data": {k: v for k, v in envelope["data"].items()
                                         if k != "agency"}},
                   {**envelope, "source": "/aduan/intake"},
                   {k: v for k, v in envelope.items() if k != "id"}):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


async def test_the_document_is_served(services: BackingServices) -> None:
    async with running_app(services) as client:
        response = await client.get("/asyncapi.json")
        assert response.status_code == 200
        assert response.json() == json.loads(json.dumps(document()))


async def test_kafka_records_carry_the_documented_headers_and_keys(
    kafka_services: BackingServices,
) -> None:
    tokens = await Tokens.create(kafka_services)
    prefix = kafka_services.prefix
    async with running_app(kafka_services) as client:
        case = await open_case(client, tokens)
        attached = await client.post(f"/v1/complaints/{case['id']}/attachments",
                                     files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(16))},
                                     headers=bearer(tokens.partner))
        assert attached.status_code == 201
        await ok(client, tokens.assistant, case["id"], "register")

        broker = kafka_services.kafka or ""

        async def published() -> list[Any]:
            records = [*await read_topic(broker, f"{prefix}aduan.complaints.v1"),
                       *await read_topic(broker, f"{prefix}aduan.cases.v1")]
            assert len(records) >= 4
            return records

        records = await eventually(published)
    doc = document()
    for record in records:
        envelope = json.loads(record.value)
        [event] = [e for e in EVENT_TYPES if e.event_type == envelope["type"]]
        message = doc["components"]["messages"][event.name]
        headers = {key: value.decode() for key, value in record.headers}
        assert headers["content-type"] == message["headers"]["properties"]["content-type"]["const"]
        assert set(message["headers"]["required"]) <= headers.keys()
        assert record.key.decode() == envelope["subject"] == case["id"]
        assert record.topic == prefix + next(
            c["address"] for c in doc["channels"].values()
            if f"#/components/messages/{event.name}" in json.dumps(c["messages"])
        ).removeprefix("{prefix}")
        validator_for(envelope["type"]).validate(envelope)
    assert {json.loads(r.value)["type"].rsplit(".", 2)[-2] for r in records} >= {
        "received", "attachment_added", "opened", "transitioned"}
