"""All three services in one process and on one port (``aduan serve``)."""

from __future__ import annotations

from fastapi import FastAPI

from case_api.app import SERVICE as CASE
from intake_api.app import SERVICE as INTAKE
from metrics_worker.app import SERVICE as METRICS
from services.asyncapi import router as asyncapi_router
from shared.clock import Clock
from shared.settings import Settings
from shared.web import ALONE, Role, Service, build_app

SERVICES: dict[str, Service] = {service.name: service for service in (INTAKE, CASE, METRICS)}
DEFAULT_PORTS = {"all": 8000, "intake": 8001, "case": 8002, "metrics": 8003}
DESCRIPTION = (
    "Complaint intake, case handling and performance figures of an Ombudsman office. "
    "Every `/v1` path needs `Authorization: Bearer <token>`; errors are RFC 9457 problem JSON.\n\n"
    "The server itself answers, before any route: 431 when the request line and headers exceed "
    "16 KiB; 408 (and closes the connection) when a request has not arrived whole within "
    "`ADUAN_REQUEST_DEADLINE_SECONDS` (30 s) of its first byte; 429 when one client address "
    "already holds `ADUAN_MAX_CONNECTIONS_PER_CLIENT` (100) open connections. Text must be "
    "Unicode: a lone UTF-16 surrogate (`\\ud800`) anywhere in a JSON body is a 422.\n\n"
    "`HEAD` is answered wherever `GET` is: the GET's status and headers, without the body. A "
    "405 names every method of the path in `Allow`."
)


def create_app(which: str = "all", settings: Settings | None = None,
               clock: Clock | None = None, role: Role = ALONE) -> FastAPI:
    services = list(SERVICES.values()) if which == "all" else [SERVICES[which]]
    title = "aduan" if which == "all" else f"aduan {which}"
    app = build_app(services, title=title, settings=settings, clock=clock,
                    description=DESCRIPTION, role=role)
    app.include_router(asyncapi_router)
    return app
