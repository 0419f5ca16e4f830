"""Complaints written straight to the intake's table, for consumer tests that need them known."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from intake_api.models import Complaint
from shared.db import Database
from shared.events import COMPLAINT_RECEIVED, Event

PARTNERS = ("posko-pln", "posko-samsat")


def complaint_row(data: dict[str, Any], n: int) -> dict[str, Any]:
    """The ``intake.complaints`` row of a ``complaint.received`` event's data."""
    return {
        "id": uuid.UUID(data["id"]), "tracking_number": f"ADU-2026-{n:06d}",
        "access_code_hash": None, "kind": data["kind"], "channel": data["channel"],
        "substance": data["substance"], "reporter": {"name": "Siti", "confidential": False},
        "reported_agency_code": data["reported_agency"]["code"],
        "reported_agency_name": data["reported_agency"]["name"],
        "summary": data.get("summary") or "Layanan tertunda", "description": "Uraian.",
        "incident_date": None, "reported_to_agency_first": None,
        "location": data.get("location"), "external_reference": None,
        "received_at": datetime.fromisoformat(data["received_at"]),
        "submitted_by": PARTNERS[n % len(PARTNERS)], "status": "received",
    }


async def record_complaints(database_url: str, events: Sequence[Event]) -> int:
    """Writes the complaint of each ``complaint.received`` among ``events`` (once each)."""
    seen: set[str] = set()
    async with Database.opened(database_url, pool_size=1) as database, \
            database.transaction() as session:
        for event in events:
            if event.type == COMPLAINT_RECEIVED and event.data["id"] not in seen:
                seen.add(event.data["id"])
                await session.execute(insert(Complaint),
                                      [complaint_row(event.data, len(seen))])
    return len(seen)
