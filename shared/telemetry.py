"""``GET /metrics``: Prometheus figures about the running service (not the Ombudsman's metrics).

Request counts and latencies are kept as requests pass (``shared.access_log``); the state of the
pool, the outbox, the consumers and the dead letters is read when Prometheus scrapes, so the
figures are never older than the scrape and cost nothing between scrapes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.access_log import RequestMetrics
from shared.problems import Problem, documented
from shared.runtime import DATABASE_LOGS, Runtime
from shared.tables import ConsumerTables

logger = logging.getLogger(__name__)

SCRAPE_TIMEOUT_SECONDS = 3.0

# A figure a service adds with one SQL statement (``Service.figures``), read at every scrape:
# name, help, label names, and a statement returning one row per label set, the label values
# first and the figure last (e.g. webhook deliveries by status).
DatabaseFigure = tuple[str, str, tuple[str, ...], str]


@dataclass
class Telemetry:
    """The figures of one process.

    With HTTP worker processes (services/workers.py) a worker keeps only its request figures,
    in prometheus_client's multiprocess files, and forwards a scrape to the main process
    (``forward_to``, its Unix socket); the main process renders its own figures with the
    workers' request figures summed from those files (``workers``, their directory).
    """

    database_figures: Sequence[DatabaseFigure] = ()
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    workers: Path | None = None
    forward_to: Path | None = None

    def __post_init__(self) -> None:
        r = self.registry
        if self.forward_to is not None:
            self.requests = RequestMetrics(r)
            return
        ProcessCollector(registry=r)
        if self.workers is not None:
            # This process answers only the workers' forwarded scrapes: its own count of them
            # would repeat the forwarding worker's.
            self.requests = RequestMetrics(CollectorRegistry())
            MultiProcessCollector(r, path=str(self.workers))  # type: ignore[no-untyped-call]
        else:
            self.requests = RequestMetrics(r)
        self.pool = Gauge("aduan_db_pool_connections", "Database pool connections by state",
                          ("state",), registry=r)
        self.database_up = Gauge("aduan_database_up", "1 when the scrape reached the database",
                                 registry=r)
        self.backlog = Gauge("aduan_outbox_backlog", "Outbox rows not yet published to Kafka",
                             ("schema",), registry=r)
        self.relay_lag = Gauge("aduan_outbox_relay_lag_seconds",
                               "Age of the oldest outbox row not yet published to Kafka",
                               ("schema",), registry=r)
        self.consumer_lag = Gauge("aduan_consumer_lag",
                                  "Events written but not yet applied, per consumer group and "
                                  "partition (database log: per log)",
                                  ("group", "topic", "partition"), registry=r)
        self.dead_lettered = Gauge("aduan_dead_lettered", "Events this process dead-lettered "
                                   "since it started", ("group",), registry=r)
        self.dead_letters_stored = Gauge("aduan_dead_letters_stored",
                                         "Dead letters kept in the database (database log)",
                                         ("schema", "group"), registry=r)
        self.figures = {name: Gauge(name, doc, labels, registry=r)
                        for name, doc, labels, _ in self.database_figures}

    async def scrape(self, runtime: Runtime, authorization: str | None = None) -> bytes:
        if self.forward_to is not None:
            return await self._forwarded(self.forward_to, authorization)
        self._pool(runtime)
        self._consumers_in_process(runtime)
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                async with runtime.database.sessionmaker() as session:
                    await self._from_database(session, runtime)
            self.database_up.set(1)
        except Exception as exc:
            logger.warning("metrics scrape could not read the database: %s", type(exc).__name__)
            self.database_up.set(0)
        return bytes(generate_latest(self.registry))

    async def _forwarded(self, socket_path: Path, authorization: str | None) -> bytes:
        headers = {"authorization": authorization} if authorization else {}
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        async with httpx.AsyncClient(transport=transport, timeout=SCRAPE_TIMEOUT_SECONDS + 2,
                                     headers=headers) as client:
            response = await client.get("http://main/metrics")
        if response.status_code != 200:
            raise Problem(503, "The main process did not give its figures "
                               f"({response.status_code}).")
        return response.content

    def _pool(self, runtime: Runtime) -> None:
        pool = runtime.database.engine.sync_engine.pool
        for state, read in (("checked_out", "checkedout"), ("idle", "checkedin"),
                            ("overflow", "overflow")):
            counter: Callable[[], int] | None = getattr(pool, read, None)
            if counter is not None:
                self.pool.labels(state).set(max(counter(), 0))

    def _consumers_in_process(self, runtime: Runtime) -> None:
        self.consumer_lag.clear()
        for runner in runtime.consumers:
            group = runtime.settings.group_prefix + runner.subscription.consumer
            self.dead_lettered.labels(group).set(runner.applier.dead_lettered)
            lag: Callable[[], dict[tuple[str, int], int]] | None = getattr(runner, "lag", None)
            for (topic, partition), behind in (lag() if lag else {}).items():
                self.consumer_lag.labels(group, topic, str(partition)).set(behind)

    async def _from_database(self, session: AsyncSession, runtime: Runtime) -> None:
        self.backlog.clear()
        self.relay_lag.clear()
        for relay in runtime.relays:
            outbox = relay.tables.outbox
            count, oldest = (await session.execute(
                select(func.count(), func.extract("epoch", func.now() - func.min(
                    outbox.c.created_at))).where(outbox.c.published_at.is_(None))
            )).one()
            self.backlog.labels(relay.tables.schema).set(count)
            self.relay_lag.labels(relay.tables.schema).set(float(oldest or 0))
        self.dead_letters_stored.clear()
        for runner in runtime.consumers:
            tables = runner.subscription.tables
            group = runtime.settings.group_prefix + runner.subscription.consumer
            dead = tables.dead_letters
            stored = (await session.execute(
                select(func.count()).select_from(dead)
                .where(dead.c.consumer == runner.subscription.consumer))).scalar_one()
            self.dead_letters_stored.labels(tables.schema, group).set(stored)
            if runtime.publisher is None:
                await self._database_log_lag(session, runner.subscription.consumer,
                                             runner.subscription.topics, group, tables)
        for name, _, _, statement in self.database_figures:
            gauge = self.figures[name]
            gauge.clear()
            for *labels, value in (await session.execute(text(statement))).all():
                gauge.labels(*[str(label) for label in labels]).set(float(value))

    async def _database_log_lag(self, session: AsyncSession, consumer: str,
                                topics: tuple[str, ...], group: str,
                                tables: ConsumerTables) -> None:
        positions = tables.log_positions
        for topic in topics:
            outbox = DATABASE_LOGS[topic].outbox
            done = (await session.execute(
                select(func.coalesce(func.max(positions.c.position), 0))
                .where(positions.c.consumer == consumer, positions.c.log == topic))).scalar_one()
            # Rows not sequenced yet (no position) are behind every reader too.
            behind = (await session.execute(
                select(func.count()).select_from(outbox).where(
                    (outbox.c.position > done) | outbox.c.position.is_(None)))).scalar_one()
            self.consumer_lag.labels(group, topic, "0").set(int(behind))


def _authorised(request: Request, token: str | None) -> bool:
    if not token:
        return True
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(),
                                                              token.encode())


def metrics_router(telemetry: Telemetry,
                   runtime_of: Callable[[Request], Runtime]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics", summary="Prometheus metrics of this service",
        description="Prometheus text format. Open unless `ADUAN_METRICS_TOKEN` is set; then "
                    "it needs `Authorization: Bearer <that token>`.",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, **documented(saying={
            401: "ADUAN_METRICS_TOKEN is set and was not presented"})},
    )
    async def metrics(request: Request) -> Response:
        runtime = runtime_of(request)
        if not _authorised(request, runtime.settings.metrics_token):
            raise Problem(401, "This server's metrics need the bearer token set in "
                               "ADUAN_METRICS_TOKEN.",
                          headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(await telemetry.scrape(runtime, request.headers.get("authorization")),
                        media_type=CONTENT_TYPE_LATEST)

    return router

