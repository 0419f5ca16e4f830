"""The case service: ``create_app()`` serves it alone (port 8002)."""

from __future__ import annotations

from fastapi import FastAPI

from case_api.consumer import SUBSCRIPTION
from case_api.endpoints import agency_router, router
from case_api.guide import GUIDES
from case_api.scheduler import run_expiry
from shared.runtime import Runtime
from shared.settings import Settings
from shared.tables import CASE_EVENTS
from shared.web import Service, build_app


def start(runtime: Runtime) -> None:
    runtime.relay(CASE_EVENTS)
    runtime.consume(SUBSCRIPTION)
    runtime.spawn("expiry", lambda: run_expiry(runtime))


SERVICE = Service(
    name="case",
    routers=[router, agency_router],
    start=start,
    tags=[{"name": "cases", "description": "The case workflow."},
          {"name": "agencies", "description": "Reported agencies and their open cases."}],
    guides=GUIDES,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_app([SERVICE], title="aduan case", settings=settings)
