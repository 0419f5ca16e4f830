"""The event consumers a batch at a time, beside the same consumers one event per transaction.

An embedded PostgreSQL holds the complaints of a synthetic history (``tests.fixtures.event_log``:
every workflow path, liaison requests and responses, duplicates) and a few webhook subscriptions
(an admin, a partner per submitter); it is copied so each way of applying starts from the same
state. Each consumer whose events follow a complaint — the metrics projection, the intake's
case-status consumer, the webhook consumer — is given the history's events:

- aduan: batches of 500 in one transaction each, as both runners deliver them, given to the
  consumer's batch handler (a statement or two per table for the whole batch);
- the reference: the same batches, the handler run for each event in the batch's transaction
  (as without a batch handler).

Per consumer: events/s and CPU per event of the consumer's own process and of PostgreSQL
(``/proc``). What each way leaves is compared (the consumer's rows and processed events), so a
fast but wrong batch cannot pass.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, text

from bench.idle import TICKS, _postgres_pids, _ticks
from bench.server import Backing, backing
from intake_api import consumer as case_status
from intake_api.models import Complaint
from intake_api.webhooks import consumer as webhooks
from intake_api.webhooks.models import WebhookSubscription
from metrics_worker import consumer as metrics
from services.postgres import DATABASE
from shared.bus import Applier, RetryPolicy, Subscription
from shared.db import Database
from shared.events import CASES_TOPIC, COMPLAINT_RECEIVED, Event
from tests.fixtures.event_log import generate
from tests.shared.batches import events_of
from tests.support import database_named, server_command

BATCH = 500
PARTNERS = 20
POLICY = RetryPolicy(attempts=1, retry_later_seconds=0.0, pause=0.01)
# What each consumer leaves, read to compare the two ways.
LEFT = {
    metrics.CONSUMER: ["SELECT count(*), sum(version) FROM metrics.cases",
                       "SELECT count(*) FROM metrics.transitions",
                       "SELECT measure, key, sum(n) FROM metrics.daily_counts GROUP BY 1, 2 "
                       "ORDER BY 1, 2"],
    case_status.CONSUMER: ["SELECT status, case_version, count(*) FROM intake.complaints "
                           "GROUP BY 1, 2 ORDER BY 1, 2"],
    webhooks.CONSUMER: ["SELECT subscription_id, event_id, event_type, md5(body) "
                        "FROM intake.webhook_deliveries ORDER BY 1, 2, 3"],
}


async def _seed(database: Database, events: Sequence[Event]) -> None:
    """The complaints of the history, and who listens to their webhooks."""
    now = datetime.now(UTC)
    seen: set[str] = set()
    async with database.transaction() as session:
        for event in events:
            data = event.data
            if event.type != COMPLAINT_RECEIVED or data["id"] in seen:
                continue
            seen.add(data["id"])
            await session.execute(insert(Complaint), [{
                "id": uuid.UUID(data["id"]), "tracking_number": f"ADU-2026-{len(seen):06d}",
                "access_code_hash": None, "kind": data["kind"], "channel": data["channel"],
                "substance": data["substance"], "reporter": None,
                "reported_agency_code": data["reported_agency"]["code"],
                "reported_agency_name": data["reported_agency"]["name"],
                "summary": data["summary"], "description": "-", "incident_date": None,
                "reported_to_agency_first": None, "location": data.get("location"),
                "external_reference": None,
                "received_at": datetime.fromisoformat(data["received_at"]),
                "submitted_by": f"partner-{len(seen) % PARTNERS}", "status": "received"}])
        for n in range(PARTNERS):
            session.add(WebhookSubscription(
                id=uuid.uuid4(), owner=f"partner-{n}", role="partner", agency_code=None,
                url="https://hooks.example.org/aduan", secret="whsec_bench", created_at=now,
                events=["complaint.received", "complaint.status_changed"]))
        session.add(WebhookSubscription(
            id=uuid.uuid4(), owner="admin", role="admin", agency_code=None,
            url="https://hooks.example.org/aduan", secret="whsec_bench", created_at=now,
            events=["complaint.status_changed", "case.awaiting_agency"]))


async def _apply(back: Backing, url: str, subscription: Subscription,
                 events: Sequence[Event]) -> dict[str, Any]:
    async with Database.opened(url, pool_size=2) as database:
        applier = Applier(database, subscription, POLICY)

        async def dead_letter(event: Event | None, error: str) -> None:
            return None

        async with database.transaction() as session:
            await session.execute(text("SELECT 1"))  # the pool's connection, counted below
        postgres = _postgres_pids(back)
        cpu, ticks, started = time.process_time(), _ticks(postgres), time.monotonic()
        for start in range(0, len(events), BATCH):
            batch = events[start:start + BATCH]
            try:
                await applier.apply_batch(batch)
            except Exception:
                for event in batch:
                    await applier.apply_single(event, dead_letter)
        seconds = time.monotonic() - started
        result: dict[str, Any] = {
            "per_s": round(len(events) / seconds),
            "cpu_ms_per_event": round((time.process_time() - cpu) * 1000 / len(events), 3),
            "postgres_cpu_ms_per_event": round(
                (_ticks(postgres) - ticks) * 1000 / TICKS / len(events), 3),
        }
        async with database.transaction() as session:
            result["left"] = [[list(row) for row in await session.execute(text(sql))]
                              for sql in LEFT[subscription.consumer]]
        return result


async def run(complaints: int) -> dict[str, Any]:
    log = generate(complaints, seed=17, faults=False)
    every = events_of(log)
    load = [round(os.getloadavg()[0], 2)]
    results: list[dict[str, Any]] = []
    async with backing() as back:
        async with Database.opened(back.url, pool_size=1) as database:
            await _seed(database, every)
        copy = f"batches_{uuid.uuid4().hex[:8]}"
        await server_command(back.url, f'CREATE DATABASE "{copy}" TEMPLATE "{DATABASE}"')
        for subscription, events in ((metrics.SUBSCRIPTION, every),
                                     (case_status.SUBSCRIPTION, events_of(log, CASES_TOPIC)),
                                     (webhooks.SUBSCRIPTION, every)):
            single = await _apply(back, back.url,
                                  dataclasses.replace(subscription, batch_handler=None), events)
            batched = await _apply(back, database_named(back.url, copy), subscription, events)
            results.append({
                "consumer": subscription.consumer, "events": len(events),
                "event_by_event": single, "batches": batched,
                "same_result": single.pop("left") == batched.pop("left"),
                "cpu_ratio": round(single["cpu_ms_per_event"]
                                   / max(batched["cpu_ms_per_event"], 0.001), 1),
            })
    load.append(round(os.getloadavg()[0], 2))
    return {"complaints": complaints, "batch": BATCH, "consumers": results,
            "load_average": load}
