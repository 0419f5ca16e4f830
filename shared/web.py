"""Builds a FastAPI app from one or more services (one each when run apart, all in one)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from shared.access_log import AccessLog
from shared.admission import Admission
from shared.clock import Clock
from shared.docs_pages import install_docs
from shared.methods import HeadAsGet
from shared.middleware import BodyGuard
from shared.openapi import Guides, install_openapi
from shared.problems import Problem, documented, install_problem_handlers
from shared.ratelimit import RateLimiter, RateTables
from shared.runtime import Runtime, RuntimeDep
from shared.settings import Settings, get_settings
from shared.telemetry import DatabaseFigure, Telemetry, metrics_router

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """One of aduan's services: its routes and what it runs in the background."""

    name: str
    routers: Sequence[APIRouter]
    start: Callable[[Runtime], None]
    tags: Sequence[dict[str, Any]] = field(default_factory=tuple)
    # Read from the database at every scrape of GET /metrics (shared.telemetry).
    figures: Sequence[DatabaseFigure] = field(default_factory=tuple)
    # Descriptions and worked examples of its operations in the OpenAPI document.
    guides: Guides = field(default_factory=dict)
    # ASGI layers around the common guards, inside the access log: to answer the guards'
    # refusals in another dialect on the service's own paths (Open311's error lists).
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = field(default_factory=tuple)


async def readiness(runtime: Runtime) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        await runtime.database.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    if runtime.publisher is not None:
        try:
            await runtime.publisher.check(within=3)
            checks["event_bus"] = "ok (kafka)"
        except Exception as exc:
            checks["event_bus"] = f"unavailable: kafka: {type(exc).__name__}"
    else:
        checks["event_bus"] = checks["database"] + " (database log)"
    return checks


@dataclass(frozen=True)
class Role:
    """What one process of a service does (see services/workers.py).

    One process alone does everything. With HTTP worker processes, the main process runs the
    services' background work once and renders ``GET /metrics`` with every worker's request
    figures (``worker_metrics``: prometheus_client's multiprocess directory), while each worker
    only answers requests and forwards ``GET /metrics`` to the main process (``metrics_from``:
    its Unix socket). All of them count requests against the same rate limits: the tables the
    main process wrote in ``rate_limits`` (shared.ratelimit); one process alone keeps its own.
    """

    background: bool = True
    worker_metrics: Path | None = None
    metrics_from: Path | None = None
    rate_limits: Path | None = None
    # Awaited before the runtime stops: the main process lets its workers finish first.
    before_stop: Callable[[], Awaitable[None]] | None = None


ALONE = Role()


def build_app(services: Sequence[Service], *, title: str, settings: Settings | None = None,
              clock: Clock | None = None, description: str = "", role: Role = ALONE) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.create(settings, clock=clock)
        app.state.runtime = runtime
        app.state.database = runtime.database
        tables = (RateTables.attach(role.rate_limits) if role.rate_limits is not None
                  else RateTables.private(settings.rate_limit_callers))
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, tables.token)
        app.state.public_rate_limiter = RateLimiter(settings.public_status_per_minute,
                                                    tables.address)
        if role.background:
            for service in services:
                service.start(runtime)
        runtime.listen()  # after the services subscribed their readers
        logger.info("%s started (%s)", title,
                    "kafka" if runtime.publisher else "database event log")
        try:
            yield
        finally:
            if role.before_stop is not None:
                await role.before_stop()
            await runtime.stop()
            tables.close()  # the maps and their files' descriptors (no request runs now)
            logger.info("%s stopped", title)

    app = FastAPI(
        title=title,
        version="1.0.0",
        description=description,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_tags=[tag for s in services for tag in s.tags],
        # The services carry the W3C trace context themselves (shared/tracing.py, no SDK):
        # FastAPI's own telemetry would only look for an SDK's providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    install_openapi(app, {key: guide for s in services for key, guide in s.guides.items()})
    install_docs(app)
    # Innermost: HEAD reaches the routes as the GET it stands for.
    app.add_middleware(HeadAsGet, router=app.router)
    # Inside the body guard: a body is read (bounded in size and time) before it takes a slot.
    app.add_middleware(Admission, limit=settings.max_requests_in_flight,
                       queue=settings.admission_queue, wait=settings.admission_wait_seconds,
                       queue_delay=settings.admission_queue_delay_seconds,
                       interval=settings.admission_interval_seconds)
    app.add_middleware(BodyGuard)
    for service in services:
        for layer in service.middleware:
            app.add_middleware(layer)
    telemetry = Telemetry([figure for service in services for figure in service.figures],
                          workers=role.worker_metrics, forward_to=role.metrics_from)
    app.add_middleware(AccessLog, metrics=telemetry.requests)  # outermost: sees every answer
    app.include_router(metrics_router(telemetry, lambda request: request.app.state.runtime))

    @app.get("/healthz", tags=["health"], summary="Process alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Database and event bus reachable",
             responses=documented(saying={503: "Not ready"}))
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        checks = await readiness(runtime)
        if all(v.startswith("ok") for v in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failed = "; ".join(f"{k}: {v}" for k, v in checks.items() if not v.startswith("ok"))
        return Problem(503, failed, checks=checks).response()

    for service in services:
        for router in service.routers:
            app.include_router(router)
    return app
