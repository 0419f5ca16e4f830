"""The intake service: ``create_app()`` serves it alone (port 8001)."""

from __future__ import annotations

from fastapi import FastAPI

from intake_api import idempotency
from intake_api.attachment_endpoints import router as attachments_router
from intake_api.consumer import SUBSCRIPTION
from intake_api.endpoints import router
from intake_api.guide import GUIDES
from intake_api.open311.endpoints import router as open311_router
from intake_api.open311.errors import Open311Errors
from intake_api.public import router as public_router
from intake_api.webhooks.consumer import SUBSCRIPTION as WEBHOOK_SUBSCRIPTION
from intake_api.webhooks.dispatcher import Dispatcher
from intake_api.webhooks.endpoints import router as webhooks_router
from shared.runtime import Runtime
from shared.settings import Settings
from shared.tables import INTAKE_EVENTS
from shared.web import Service, build_app


def start(runtime: Runtime) -> None:
    runtime.relay(INTAKE_EVENTS)
    runtime.consume(SUBSCRIPTION)
    runtime.spawn("idempotency-purge",
                  lambda: idempotency.keep_purging(runtime.work_database, runtime.clock))
    runtime.consume(WEBHOOK_SUBSCRIPTION)
    runtime.spawn("webhooks",
                  Dispatcher(runtime.work_database, runtime.settings, runtime.wakeup).run)


SERVICE = Service(
    name="intake",
    routers=[router, attachments_router, open311_router, public_router, webhooks_router],
    start=start,
    figures=[("aduan_webhook_deliveries", "Webhook deliveries by status", ("status",),
              "SELECT status, count(*) FROM intake.webhook_deliveries GROUP BY status")],
    tags=[{"name": "complaints", "description": "Complaints posted by partners and assistants."},
          {"name": "attachments", "description": "Evidence files of a complaint."},
          {"name": "open311", "description": "Open311 GeoReport v2 for civic reporting clients "
                                             "(JSON and XML; errors as the standard's lists)."},
          {"name": "status", "description": "The complainant follows a complaint with its "
                                            "tracking number and access code, no account."},
          {"name": "webhooks", "description": "Signed deliveries of events to partners' and "
                                              "agencies' own systems."}],
    guides=GUIDES,
    middleware=[Open311Errors],
)


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_app([SERVICE], title="aduan intake", settings=settings)
