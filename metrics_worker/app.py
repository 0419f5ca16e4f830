"""The metrics service: ``create_app()`` serves it alone (port 8003)."""

from __future__ import annotations

from fastapi import FastAPI

from metrics_worker import dashboard, repository
from metrics_worker.bi_watchdog import BiWatchdog
from metrics_worker.consumer import SUBSCRIPTION
from metrics_worker.endpoints import router
from metrics_worker.guide import GUIDES
from shared.runtime import Runtime
from shared.settings import Settings
from shared.web import Service, build_app


async def publish_timezone(runtime: Runtime) -> None:
    async with runtime.work_database.transaction() as session:
        await repository.set_office_timezone(session, runtime.settings.timezone)


def start(runtime: Runtime) -> None:
    async def timezone_then_consume() -> None:
        # Daily counts are kept in the office's zone: record it before applying any event.
        await publish_timezone(runtime)
        runtime.consume(SUBSCRIPTION)

    runtime.spawn("office-timezone", timezone_then_consume)
    watchdog = BiWatchdog(runtime.work_database,
                          limit_seconds=runtime.settings.bi_query_limit_seconds,
                          interval_seconds=runtime.settings.bi_watchdog_interval_seconds)
    runtime.spawn("bi-watchdog", watchdog.run)


SERVICE = Service(
    name="metrics",
    routers=[router, dashboard.router],
    start=start,
    tags=[{"name": "metrics", "description": "Figures for BI tools and the quarterly report."},
          {"name": "dashboard", "description": "The figures as charts, for people."}],
    guides=GUIDES,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_app([SERVICE], title="aduan metrics", settings=settings)
