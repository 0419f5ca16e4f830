"""The rebuild's reader of envelopes (``shared.events.plain_fields``) takes nothing
``plain_envelope`` would not, and reads what it takes the same way; a record it leaves goes where
it went before."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics_worker.replay import Replay
from metrics_worker.tally import Tally
from shared.events import (
    COMPLAINT_ATTACHMENT_ADDED,
    TYPE_PREFIX,
    Event,
    MalformedEvent,
    new_event,
    plain_envelope,
    plain_fields,
)

JAKARTA = ZoneInfo("Asia/Jakarta")
MISSING = object()


def envelope(**changes: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = new_event(
        COMPLAINT_ATTACHMENT_ADDED, source="/aduan/intake", subject="c-1",
        time=datetime(2022, 3, 3, 9, 15, tzinfo=JAKARTA),
        data={"complaint_id": "c-1", "size": 10}).envelope()
    for name, value in changes.items():
        if value is MISSING:
            attributes.pop(name, None)
        else:
            attributes[name] = value
    return attributes


def raw(**changes: Any) -> bytes:
    return json.dumps(envelope(**changes)).encode()


def agrees(value: bytes | str) -> tuple[str, str, dict[str, Any]] | None:
    """``plain_fields(value)``, asserted to be ``plain_envelope``'s reading when not ``None``."""
    fields = plain_fields(value)
    if fields is not None:
        attributes = plain_envelope(value)
        assert attributes is not None
        assert fields == (attributes["id"], attributes["type"], attributes["data"])
    return fields


@pytest.mark.parametrize("value", [
    pytest.param(raw(), id="as written"),
    pytest.param(raw().decode(), id="as text"),
    pytest.param(raw(partitionkey=MISSING, datacontenttype=MISSING), id="no optional ones"),
    pytest.param(raw(time="2022-03-03 02:15:00+07:00"), id="time with a space"),
    pytest.param(raw(time="20220303T021500Z"), id="basic format"),
    pytest.param(raw(data={}), id="empty data"),
    pytest.param(raw(data={"a": [1, {"b": None}], "t": True}), id="nested data"),
])
def test_the_envelopes_the_services_write_take_the_fast_way(value: bytes | str) -> None:
    assert agrees(value) is not None


@pytest.mark.parametrize("value", [
    pytest.param(b"\xff\xfe", id="not text"),
    pytest.param(b"not json", id="not JSON"),
    pytest.param(b"[1, 2]", id="not an object"),
    pytest.param(b"null", id="null"),
    pytest.param(b'{"data": {}, "data": 1}', id="a key twice"),
    pytest.param(raw(specversion="0.3"), id="another spec version"),
    pytest.param(raw(specversion=MISSING), id="no spec version"),
    pytest.param(raw(type=MISSING), id="no type"),
    pytest.param(raw(subject=None), id="subject null"),
    pytest.param(raw(id=""), id="empty id"),
    pytest.param(raw(id=7), id="a number as id"),
    pytest.param(raw(source=7), id="a number as source"),
    pytest.param(raw(time=MISSING), id="no time"),
    pytest.param(raw(time="2022-03-03T02:15:00"), id="time without offset"),
    pytest.param(raw(time="yesterday"), id="time not a timestamp"),
    pytest.param(raw(data="text"), id="data not an object"),
    pytest.param(raw(data=MISSING), id="no data"),
    pytest.param(raw(partitionkey=""), id="an empty partition key"),
    pytest.param(raw(datacontenttype=3), id="a number as content type"),
    pytest.param(raw(dataschema="https://example.org/s"), id="a data schema"),
    pytest.param(raw(data_base64="e30="), id="data in base64 too"),
    pytest.param(raw(data={"n": 1.5}), id="a float"),
    pytest.param(raw(data={"m": [{"k": 2**70}]}), id="an integer beyond 64 bits"),
    pytest.param(raw(data={"t": "\ud800"}), id="a lone surrogate"),
])
def test_anything_else_is_left_to_the_full_reader(value: bytes | str) -> None:
    assert agrees(value) is None


@pytest.mark.parametrize("value", [
    pytest.param(b"not json", id="not JSON"),
    pytest.param(raw(time="yesterday"), id="time not a timestamp"),
    pytest.param(raw(id=MISSING), id="no id"),
    pytest.param(raw(data="text"), id="data not an object"),
])
def test_a_record_that_is_not_an_event_is_set_aside_as_before(value: bytes) -> None:
    """With the reason the SDK gives, as the live consumer's dead letter carries it."""
    with pytest.raises(MalformedEvent) as refused:
        Event.from_json(value)
    replay = Replay(Tally(UTC))
    assert replay.fold(value) == (None, str(refused.value))
    assert replay.take() == ([], [], [], [])


@pytest.mark.parametrize("value", [
    pytest.param(raw(type=TYPE_PREFIX + "unknown.v1"), id="the fast way"),
    pytest.param(raw(type=TYPE_PREFIX + "unknown.v1", data={"n": 1.5}), id="plain_envelope's"),
    pytest.param(raw(type=TYPE_PREFIX + "unknown.v1", dataschema="x"), id="the SDK's"),
])
def test_an_event_of_a_type_not_known_is_set_aside_whichever_way_it_was_read(
        value: bytes) -> None:
    replay = Replay(Tally(UTC))
    assert replay.fold(value) == (Event.from_json(value),
                                  f"unknown event type: {TYPE_PREFIX}unknown.v1")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
texts = st.text(max_size=8) | st.sampled_from(["id-1", "/aduan/intake", "application/json"])
attribute = st.one_of(st.just(MISSING), st.none(), st.integers(), texts)
times = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, JAKARTA])).map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat()), attribute)


@settings(max_examples=300, deadline=None)
@given(changes=st.fixed_dictionaries({}, optional={
    "specversion": st.sampled_from(["1.0", "1.0 ", "0.3", MISSING]),
    "id": attribute, "source": attribute, "type": attribute, "subject": attribute,
    "time": times, "datacontenttype": attribute, "partitionkey": attribute,
    "data": st.dictionaries(st.text(max_size=4), json_values, max_size=4) | json_values,
    "dataschema": texts, "extension": json_values,
}), as_text=st.booleans())
def test_the_fast_reader_never_reads_otherwise(changes: dict[str, Any], as_text: bool) -> None:
    """Each attribute present or not, of any JSON type: what the fast way takes is read as
    ``plain_envelope`` reads it, and it takes every envelope as the services write them."""
    value = json.dumps(envelope(**changes))
    fields = agrees(value if as_text else value.encode())
    attributes = plain_envelope(value)
    if attributes is not None and not any(
            isinstance(leaf, float) or (isinstance(leaf, int) and not -2**63 <= leaf < 2**64)
            for leaf in _leaves(attributes["data"])):
        assert fields is not None


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
