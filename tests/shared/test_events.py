"""The envelope: CloudEvents 1.0, structured mode, JSON, that the official SDK reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import ConsumerRecord
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import (
    CASE_OPENED,
    CASE_TRANSITIONED,
    CASES_TOPIC,
    COMPLAINT_RECEIVED,
    COMPLAINTS_TOPIC,
    CONTENT_TYPE,
    Event,
    MalformedEvent,
    encoded_envelope,
    new_event,
)
from tests.shared.kafka_topics import read_topic
from tests.support import BackingServices, bearer, complaint, eventually, running_app

JAKARTA = ZoneInfo("Asia/Jakarta")


def sdk_read(message: KafkaMessage) -> BaseCloudEvent:
    return from_structured(message, JSONFormat())


def as_message(record: ConsumerRecord[bytes, bytes]) -> KafkaMessage:
    return KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)


def received(**data: Any) -> Event:
    return new_event(COMPLAINT_RECEIVED, source="/aduan/intake", subject="c-1",
                     time=datetime(2022, 3, 3, 9, 15, tzinfo=JAKARTA),
                     data={"id": "c-1", **data})


def test_an_event_is_a_structured_cloudevent_keyed_by_its_subject() -> None:
    event = received(kind="report")

    message = event.to_kafka()
    parsed = sdk_read(message)

    assert message.headers == {"content-type": CONTENT_TYPE.encode()}
    assert message.key == event.subject == "c-1"
    assert parsed.get_attributes() == {
        "specversion": "1.0", "id": event.id, "source": "/aduan/intake",
        "type": "id.go.ombudsman.aduan.complaint.received.v1", "subject": "c-1",
        "time": datetime(2022, 3, 3, 2, 15, tzinfo=UTC), "datacontenttype": "application/json",
        "partitionkey": "c-1",
    }
    assert parsed.get_data() == {"id": "c-1", "kind": "report"}


def test_the_envelope_is_the_one_in_the_contract() -> None:
    envelope = received(kind="report").envelope()

    assert envelope["time"] == "2022-03-03T02:15:00Z"
    assert envelope["partitionkey"] == envelope["subject"] == "c-1"
    assert set(envelope) == {"specversion", "id", "source", "type", "subject", "time",
                             "datacontenttype", "partitionkey", "data"}


def test_an_event_another_producer_wrote_with_the_sdk_is_read() -> None:
    written = CloudEvent({"id": "e-1", "source": "/elsewhere", "type": CASE_OPENED,
                          "subject": "c-2", "time": datetime(2022, 3, 3, 2, 15, tzinfo=UTC),
                          "datacontenttype": "application/json"}, {"case_id": "c-2"})

    event = Event.from_json(to_structured(written, JSONFormat()).value)

    assert event == Event(type=CASE_OPENED, source="/elsewhere", subject="c-2",
                          time=datetime(2022, 3, 3, 2, 15, tzinfo=UTC), data={"case_id": "c-2"},
                          id="e-1")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=8)


# Jakarta's clocks last changed in 1964: a time in a half hour they repeated before compares
# unequal to the same instant in UTC (PEP 495), though the event kept its instant.
@settings(max_examples=40, deadline=None)
@given(subject=st.text(min_size=1), data=st.dictionaries(st.text(), json_values, max_size=6),
       time=st.datetimes(min_value=datetime(1965, 1, 1),
                         timezones=st.sampled_from([UTC, JAKARTA])))
def test_any_event_survives_the_sdk_and_back(subject: str, data: dict[str, Any],
                                             time: datetime) -> None:
    event = new_event(CASE_TRANSITIONED, source="/aduan/case", subject=subject, data=data,
                      time=time)

    parsed = sdk_read(event.to_kafka())

    assert parsed.get_data() == data
    assert parsed.get_attributes()["partitionkey"] == subject
    assert event.to_json() == JSONFormat().write(event.to_cloudevent())  # the SDK's very bytes
    assert Event.from_json(event.to_json()) == event
    assert Event.from_json(json.dumps(event.envelope())) == event
    assert Event.read(event.to_json()) == event


@settings(max_examples=40, deadline=None)
@given(subject=st.text(min_size=1), data=st.dictionaries(st.text(), json_values, max_size=6),
       time=st.datetimes(min_value=datetime(1965, 1, 1),
                         timezones=st.sampled_from([UTC, JAKARTA])))
def test_an_envelope_of_data_written_as_json_is_the_events_own(
        subject: str, data: dict[str, Any], time: datetime) -> None:
    """The outbox's fast writer: the document ``to_json`` writes, of the same attributes."""
    event = new_event(COMPLAINT_RECEIVED, source="/aduan/intake", subject=subject, data=data,
                      time=time)

    encoded = encoded_envelope(COMPLAINT_RECEIVED, event_id=event.id, source=event.source,
                               subject=subject, time=time, data_json=json.dumps(data))

    assert json.loads(encoded) == json.loads(event.to_json())
    assert Event.read(encoded) == event


def test_times_in_data_are_written_as_the_sdk_writes_them() -> None:
    event = received(due_at=datetime(2022, 3, 4, 9, 0, 0, 250, tzinfo=JAKARTA),
                     closed_at=datetime(2022, 3, 5, tzinfo=UTC), place="Kelurahan Bukit Intan é")

    assert event.to_json() == JSONFormat().write(event.to_cloudevent())
    assert b'"closed_at": "2022-03-05T00:00:00Z"' in event.to_json()


def envelope(**changes: Any) -> bytes:
    value = received().envelope()
    value.update(changes)
    return json.dumps({k: v for k, v in value.items() if v is not None}).encode()


@pytest.mark.parametrize("raw", [
    pytest.param(b"\xff\xfe", id="not text"),
    pytest.param(b"not json", id="not JSON"),
    pytest.param(b"[1, 2]", id="not an object"),
    pytest.param(b"null", id="null"),
    pytest.param(envelope(specversion="0.3"), id="another spec version"),
    pytest.param(envelope(type=None), id="no type"),
    pytest.param(envelope(subject=None), id="no subject"),
    pytest.param(envelope(id=None), id="no id"),  # the SDK would make one up
    pytest.param(envelope(time=None), id="no time"),  # the SDK would take the time of reading
    pytest.param(envelope(time="2022-03-03T02:15:00"), id="time without offset"),
    pytest.param(envelope(time="yesterday"), id="time not a timestamp"),
    pytest.param(envelope(data="text"), id="data not an object"),
])
def test_what_is_not_one_of_our_cloudevents_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        Event.from_json(raw)
    with pytest.raises(MalformedEvent):
        Event.read(raw)


@pytest.mark.parametrize("raw", [
    pytest.param(envelope(), id="as written"),
    pytest.param(envelope(time="2022-03-03 02:15:00+07:00"), id="time with a space"),
    pytest.param(envelope(time="2022-03-03T02:15:00.123+07:00"), id="milliseconds"),
    pytest.param(envelope(time="20220303T021500Z"), id="basic format"),
    pytest.param(envelope(dataschema="https://example.org/s"), id="a data schema"),
    pytest.param(envelope(Traceparent="00"), id="an extension not in lower case"),
    pytest.param(envelope(partitionkey=""), id="an empty partition key"),
    pytest.param(envelope(datacontenttype=""), id="an empty content type"),
    pytest.param(envelope(source=7), id="a number as source"),
    pytest.param(envelope(data_base64="e30="), id="data in base64 too"),
    pytest.param(envelope(data={"n": -(2**63) - 1, "m": [{"k": 2**70}]}),
                 id="integers beyond 64 bits"),
    pytest.param(envelope(data={"n": 1.5, "m": -0.0}), id="floats"),
])
def test_the_fast_reader_reads_what_the_sdk_reads(raw: bytes) -> None:
    """``Event.read`` (used to replay whole logs) accepts and refuses exactly as ``from_json``."""
    try:
        expected: Event | str = Event.from_json(raw)
    except MalformedEvent:
        expected = "malformed"
    try:
        read: Event | str = Event.read(raw)
    except MalformedEvent:
        read = "malformed"
    assert read == expected


async def test_every_record_the_services_publish_parses_with_the_sdk(
        kafka_services: BackingServices) -> None:
    """What the relays put on the real topics, read back: every type the services produce."""
    partner = await kafka_services.token("partner", "posko-pln")
    assistant = await kafka_services.token("assistant", "asisten.pvl")
    assert kafka_services.kafka is not None
    bootstrap = kafka_services.kafka
    topics = [kafka_services.prefix + COMPLAINTS_TOPIC, kafka_services.prefix + CASES_TOPIC]
    async with running_app(kafka_services) as client:
        created = await client.post("/v1/complaints", json=complaint(), headers=bearer(partner))
        assert created.status_code == 201, created.text
        case_id = created.json()["id"]

        async def opened() -> None:
            response = await client.get(f"/v1/cases/{case_id}", headers=bearer(assistant))
            assert response.status_code == 200

        await eventually(opened)
        registered = await client.post(f"/v1/cases/{case_id}/transitions",
                                       json={"action": "register", "complexity": "simple"},
                                       headers=bearer(assistant))
        assert registered.status_code == 200, registered.text

        async def all_published() -> list[ConsumerRecord[bytes, bytes]]:
            records = [r for topic in topics for r in await read_topic(bootstrap, topic)]
            assert len(records) == 3
            return records

        records = await eventually(all_published)

    types = []
    for record in records:
        parsed = sdk_read(as_message(record))
        attributes = parsed.get_attributes()
        headers = dict(record.headers)
        assert headers.pop("content-type") == b"application/cloudevents+json"
        assert set(headers) == {"traceparent"}  # the request's trace (tests/shared/test_tracing)
        assert record.key.decode() == attributes["subject"] == case_id
        assert json.loads(record.value)["partitionkey"] == case_id  # as sent, not as keyed
        assert attributes["specversion"] == "1.0"
        assert isinstance(parsed.get_data(), dict)
        types.append(attributes["type"])
    assert sorted(types) == sorted([COMPLAINT_RECEIVED, CASE_OPENED, CASE_TRANSITIONED])
