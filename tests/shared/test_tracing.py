"""One complaint's trace: the request's ``traceparent`` through the outbox, Kafka and consumers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import tracing
from shared.events import CASES_TOPIC, COMPLAINTS_TOPIC
from tests.shared.kafka_topics import read_topic
from tests.support import BackingServices, bearer, complaint, eventually, query, running_app

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
HEADERS = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01", "tracestate": "posko=pln"}


def trace_of(traceparent: str) -> tuple[str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, flags) == ("00", "01")
    return trace_id, span_id


async def outbox_traces(database_url: str, schema: str, subject: str) -> list[Any]:
    return await query(database_url,
                       f"SELECT envelope->>'type' AS type, trace_context::text AS trace "
                       f"FROM {schema}.outbox WHERE key = $1 ORDER BY id", subject)


async def test_the_request_trace_reaches_the_database_log_and_its_consumers(
        services: BackingServices) -> None:
    partner = await services.token("partner", "posko-pln")
    async with running_app(services) as client:
        created = await client.post("/v1/complaints", json=complaint(),
                                    headers={**bearer(partner), **HEADERS})
        assert created.status_code == 201, created.text
        subject = created.json()["id"]

        async def case_opened() -> list[Any]:
            rows = await outbox_traces(services.database_url, "cases", subject)
            assert rows
            return rows

        opened = await eventually(case_opened)
    received = await outbox_traces(services.database_url, "intake", subject)
    for row in [*received, *opened]:
        trace = json.loads(row["trace"])
        trace_id, span_id = trace_of(trace["traceparent"])
        assert trace_id == TRACE_ID, row["type"]
        assert span_id != CALLER_SPAN  # each hop is a span of its own
        assert trace["tracestate"] == "posko=pln"


async def test_every_way_of_posting_a_complaint_keeps_the_request_trace(
        services: BackingServices) -> None:
    """Alone (an ``Idempotency-Key`` makes the complaint its own statement), through Open311's
    form, or with others in a group: each complaint's event carries its request's trace."""
    partner = await services.token("partner", "posko-pln")
    form = {"service_code": "electricity", "lat": "-2.1316", "long": "106.1169",
            "description": "Listrik padam sejak pagi di Jalan Merdeka.", "first_name": "Sari",
            "last_name": "Wulan", "api_key": partner}
    async with running_app(services) as client:
        keyed = await client.post("/v1/complaints", json=complaint(), headers={
            **bearer(partner), **HEADERS, "Idempotency-Key": "trace-1"})
        assert keyed.status_code == 201, keyed.text
        grouped = await client.post("/v1/complaints", json=complaint(),
                                    headers={**bearer(partner), **HEADERS})
        assert grouped.status_code == 201, grouped.text
        open311 = await client.post("/open311/v2/requests.json", data=form, headers=HEADERS)
        assert open311.status_code == 201, open311.text
        number = open311.json()[0]["service_request_id"]
    [found] = await query(services.database_url,
                          "SELECT id::text AS id FROM intake.complaints "
                          "WHERE tracking_number = $1", number)
    for subject in (keyed.json()["id"], grouped.json()["id"], found["id"]):
        [row] = await outbox_traces(services.database_url, "intake", subject)
        assert row["trace"] is not None, subject
        trace = json.loads(row["trace"])
        assert trace_of(trace["traceparent"])[0] == TRACE_ID, subject
        assert trace["tracestate"] == "posko=pln"


async def test_the_request_trace_travels_in_kafka_headers(
        kafka_services: BackingServices) -> None:
    partner = await kafka_services.token("partner", "posko-pln")
    assert kafka_services.kafka is not None
    async with running_app(kafka_services) as client:
        created = await client.post("/v1/complaints", json=complaint(),
                                    headers={**bearer(partner), **HEADERS})
        assert created.status_code == 201, created.text

        async def both_published() -> list[Any]:
            records = [r for topic in (COMPLAINTS_TOPIC, CASES_TOPIC)
                       for r in await read_topic(kafka_services.kafka or "",
                                                 kafka_services.prefix + topic)]
            assert len(records) == 2  # complaint received, case opened (by the case consumer)
            return records

        records = await eventually(both_published)
    spans = set()
    for record in records:
        headers = dict(record.headers)
        trace_id, span_id = trace_of(headers["traceparent"].decode())
        assert trace_id == TRACE_ID
        assert headers["tracestate"] == b"posko=pln"
        spans.add(span_id)
    assert len(spans) == 2
    assert CALLER_SPAN not in spans


def test_a_hop_without_a_carrier_starts_a_trace_of_its_own_even_inside_another() -> None:
    outer_carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracing.continued(outer_carrier) as outer:
        with tracing.continued(None) as inner:
            assert inner.trace_id != outer.trace_id
        with tracing.continued({}) as empty:
            assert empty.trace_id != outer.trace_id
    assert format(outer.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize("carrier", [
    pytest.param(None, id="a new trace"),
    pytest.param({"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}, id="continued"),
    pytest.param({"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-00"}, id="not sampled"),
    pytest.param(HEADERS, id="with its state"),
])
def test_the_carrier_handed_on_is_what_the_w3c_propagator_writes(
        carrier: dict[str, str] | None) -> None:
    with tracing.continued(carrier):
        written: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(written)
        assert tracing.current_carrier() == written


def test_outside_any_hop_there_is_no_carrier() -> None:
    assert tracing.current_carrier() is None
