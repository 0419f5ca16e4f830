"""What a complaint posted is written as (intake_api/service.py): its row, its event, its answer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from intake_api import access, service
from intake_api.schemas import ComplaintCreate
from shared.auth import Actor, Role
from shared.events import COMPLAINT_RECEIVED, COMPLAINTS_TOPIC, Event, new_event
from tests.support import complaint

RECEIVED_AT = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC)
CARRIER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def json_of(value: Any) -> Any:
    """A value of the complaint row as the database receives it (orjson's JSON)."""
    return orjson.loads(orjson.dumps(value))


@pytest.mark.parametrize("body", [
    pytest.param(complaint(summary="Listrik padam di Bukit Intan é — \"lagi\"",
                           external_reference="POSKO-1"), id="a report"),
    pytest.param(complaint(kind="consultation", location=None), id="opening no case"),
    pytest.param(complaint(kind="own_initiative", reporter=None, location=None),
                 id="without reporter or location"),
])
def test_a_complaint_is_written_as_its_event_says(body: dict[str, Any]) -> None:
    """The outbox row holds the event ``new_event`` makes of the answer without its access
    code (written as JSON text once, not through ``Event.to_json``), and the complaint row's
    reporter and location are the event's. The tracking number is left for the statement
    that draws it (tests/intake_api/test_group_commit.py), which hashes the code with it."""
    payload = ComplaintCreate.model_validate_json(json.dumps(body))
    actor = Actor("posko-pln", Role.assistant)
    write = service._writer(actor, payload, code="K7QM-2RXP-9WTD", received_at=RECEIVED_AT)

    values, (event_id, topic, key, envelope, carrier), created = write(CARRIER)

    data = created.model_dump(mode="json", exclude={"access_code"})
    expected = new_event(COMPLAINT_RECEIVED, source=service.SOURCE, subject=str(created.id),
                         data=data, time=RECEIVED_AT)
    assert json.loads(envelope) == json.loads(Event(
        type=expected.type, source=expected.source, subject=expected.subject,
        time=expected.time, data=expected.data, id=event_id).to_json())
    assert "access_code" not in json.loads(envelope)["data"]
    assert uuid.UUID(event_id).version == 4
    assert (topic, key) == (COMPLAINTS_TOPIC, str(created.id))
    assert carrier is not None
    assert json.loads(carrier) == CARRIER
    assert values["id"] == created.id
    assert json_of(values["reporter"]) == data["reporter"]
    assert json_of(values["location"]) == data["location"]
    assert created.tracking_number == json.loads(envelope)["data"]["tracking_number"] == ""
    assert values["access_code"] == access.normalize("K7QM-2RXP-9WTD")
    assert "access_code_hash" not in values
    assert created.access_code == "K7QM-2RXP-9WTD"


def test_without_a_trace_context_the_row_has_none() -> None:
    payload = ComplaintCreate.model_validate(complaint())
    write = service._writer(Actor("posko-pln", Role.partner), payload, code="K7QM-2RXP-9WTD",
                            received_at=RECEIVED_AT)

    _, event, _ = write(None)

    assert event[4] is None
