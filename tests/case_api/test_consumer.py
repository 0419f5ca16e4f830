"""Opening cases from a batch of ``complaint.received`` events in one transaction."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from case_api.consumer import SUBSCRIPTION
from case_api.models import Agency, Case
from shared.bus import Applier
from shared.db import Database
from shared.events import (
    CASE_OPENED,
    COMPLAINT_ATTACHMENT_ADDED,
    COMPLAINT_RECEIVED,
    Event,
    new_event,
)
from shared.tables import CASE_EVENTS
from tests.support import BackingServices

AT = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


def received(n: int, *, kind: str = "report", agency: str = "pln-uiw-babel",
             name: str = "PT PLN (Persero) UIW Babel") -> Event:
    complaint_id = str(uuid.uuid4())
    data: dict[str, Any] = {
        "id": complaint_id, "tracking_number": f"ORI-2026-{n:05d}", "kind": kind,
        "channel": "partner_api", "substance": "electricity",
        "reported_agency": {"code": agency, "name": name},
        "reporter": {"name": "Siti Aminah", "confidential": False},
        "summary": f"complaint {n}", "description": "Listrik padam.",
        "location": {"regency": "Pangkalpinang"}, "incident_date": "2026-11-01",
        "reported_to_agency_first": True,
        "received_at": (AT + timedelta(minutes=n)).isoformat(),
    }
    event = new_event(COMPLAINT_RECEIVED, source="/aduan/intake", subject=complaint_id,
                      data=data)
    trace = f"00-{uuid.uuid4().hex}-{n + 1:016x}-01"
    return dataclasses.replace(event, trace={"traceparent": trace})


async def test_a_batch_opens_each_case_once_counts_agencies_and_continues_each_trace(
        services: BackingServices) -> None:
    reports = [received(n) for n in range(5)]
    other = received(5, agency="samsat-sungailiat", name="Samsat Sungailiat")
    consultation = received(6, kind="consultation")  # counted, opens no case
    renamed = received(7, name="a partner's spelling")  # the first sighting keeps its name
    evidence = new_event(COMPLAINT_ATTACHMENT_ADDED, source="/aduan/intake",
                         subject=reports[0].subject, data={"complaint_id": reports[0].subject})
    # The same complaint under a second event id (written twice): one case all the same.
    again = dataclasses.replace(reports[1], id=str(uuid.uuid4()))
    batch = [*reports, other, evidence, consultation, renamed, again, reports[2]]

    async with Database.opened(services.database_url, pool_size=2) as database:
        await Applier(database, SUBSCRIPTION).apply_batch(batch)
        async with database.transaction() as session:
            cases = {c.tracking_number: c for c in (await session.scalars(select(Case))).all()}
            agencies = {a.code: a for a in (await session.scalars(select(Agency))).all()}
            outbox = (await session.execute(
                select(CASE_EVENTS.outbox.c.envelope, CASE_EVENTS.outbox.c.trace_context)
                .order_by(CASE_EVENTS.outbox.c.id))).all()

    opening = [*reports, other, renamed]
    assert sorted(cases) == sorted(e.data["tracking_number"] for e in opening)
    assert all(cases[e.data["tracking_number"]].id == uuid.UUID(e.subject) for e in opening)
    assert {c.status for c in cases.values()} == {"received"}
    # Counted once per event applied: the complaint written twice counts twice, as it would
    # one event at a time; the event delivered twice (reports[2]) counts once.
    assert agencies["pln-uiw-babel"].complaints == 8
    assert agencies["pln-uiw-babel"].name == "PT PLN (Persero) UIW Babel"
    assert agencies["pln-uiw-babel"].first_seen_at == AT
    assert agencies["samsat-sungailiat"].complaints == 1
    assert [row.envelope["type"] for row in outbox] == [CASE_OPENED] * len(opening)
    assert [row.envelope["data"]["case_id"] for row in outbox] == [e.subject for e in opening]
    for row, event in zip(outbox, opening, strict=True):
        trace_id = event.trace["traceparent"].split("-")[1] if event.trace else None
        assert row.trace_context["traceparent"].split("-")[1] == trace_id
