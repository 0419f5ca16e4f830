"""Breaking things on purpose: real broker, real database, services as separate processes.

Each test starts and stops its own processes; the broker and database ones that a test stops
are its own, so the rest of the suite is untouched. Measured numbers go to the test's output
(`-s` shows them) and are summarised in docs/faults.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.kafka import start_kafka
from services.migrate import migrate_async
from services.postgres import start_postgres
from tests.faults import Load, cases_opened, contacts_counted
from tests.support import BackingServices, ServiceProcess, bearer

pytestmark = pytest.mark.timeout(600)


@dataclass
class Pipeline:
    """The three services as separate processes, a partner's load on intake, an analyst."""

    backing: BackingServices
    tmp_path: Path
    processes: dict[str, ServiceProcess]
    client: httpx.AsyncClient
    load: Load
    partner: str
    analyst: str

    def url(self, name: str) -> str:
        return self.processes[name].url

    async def restart(self, name: str, log: str) -> None:
        """A fresh process of ``name`` (after the old one stopped), ready to serve."""
        fresh = ServiceProcess(name, self.backing.env(), self.tmp_path / log)
        self.processes[name] = fresh.start()
        await fresh.wait_ready()

    async def counted(self, accepted: int) -> dict[str, Any]:
        """The metrics summary once it counts ``accepted`` contacts."""
        return await contacts_counted(self.client, self.url("metrics"), self.analyst, accepted)


@contextlib.asynccontextmanager
async def pipeline(backing: BackingServices, tmp_path: Path) -> AsyncIterator[Pipeline]:
    processes = {name: ServiceProcess(name, backing.env(), tmp_path / f"{name}.log").start()
                 for name in ("intake", "case", "metrics")}
    try:
        await asyncio.gather(*(p.wait_ready() for p in processes.values()))
        partner = await backing.token("partner")
        analyst = await backing.token("analyst")
        async with httpx.AsyncClient(timeout=30) as client:
            yield Pipeline(backing, tmp_path, processes, client,
                           Load(processes["intake"].url, partner), partner, analyst)
    finally:
        for process in processes.values():
            process.stop()


def graceful(process: ServiceProcess) -> bool:
    """SIGTERM: uvicorn finishes in-flight requests, the lifespan flushes and commits, and
    then re-raises the signal, so the exit status is -15 after a clean shutdown."""
    code = process.stop()
    assert code in (0, -15), process.log_tail()
    assert "Application shutdown complete" in process.log_tail(), process.log_tail()
    return True


async def test_broker_down_keeps_accepting_and_delivers_later(
    database_url: str, tmp_path: Path,
) -> None:
    broker = start_kafka(tmp_path / "kafka")
    backing = BackingServices(database_url, broker.bootstrap_servers, tmp_path,
                              prefix=f"f{uuid.uuid4().hex[:6]}.")
    try:
        async with pipeline(backing, tmp_path) as run:
            load, client = run.load, run.client
            await load.burst(client, 30)
            broker.stop()
            await load.burst(client, 40)
            readiness = await client.get(f"{run.url('intake')}/readyz")
            assert readiness.status_code == 503
            assert "kafka" in readiness.json()["detail"]
            await load.burst(client, 10)
            broker = start_kafka(tmp_path / "kafka", port=broker.port)
            await load.burst(client, 20)
            assert load.codes() == {201: 100}, load.codes()
            assert not load.errors
            summary = await run.counted(100)
            await cases_opened(client, run.url("case"), run.analyst, 100)
            assert summary["received"] == 100
        print(f"\nbroker down: sent 100, accepted {len(load.accepted)}, "
              f"counted {summary['contacts']}, slowest answer {load.slowest():.2f}s")
    finally:
        broker.stop()


async def test_killed_metrics_worker_counts_nothing_twice(
    kafka_services: BackingServices, tmp_path: Path,
) -> None:
    # On a machine busy with other work, intake may answer some posts 503 (a new database
    # connection slow to open): the partner posts those again with their Idempotency-Key, so
    # all 300 complaints are stored, once each, whatever the load. Nothing here is about intake.
    async with pipeline(kafka_services, tmp_path) as run:
        load, client = run.load, run.client
        await load.burst(client, 150, concurrency=16, patient=True)
        posting = asyncio.create_task(load.burst(client, 150, concurrency=16, patient=True))
        await asyncio.sleep(0.5)
        run.processes["metrics"].stop(kill=True)
        await posting
        await run.restart("metrics", "m2.log")
        assert load.codes() == {201: 300}, (load.codes(), load.retried[:3])
        assert not load.errors, load.errors[:3]
        assert len(set(load.accepted)) == 300
        summary = await run.counted(300)
        assert summary["received"] == 300
        assert sum(summary["received_by_month"].values()) == 300
    print(f"\nworker killed: sent 300, accepted 300 ({len(load.retried)} posted again), "
          f"counted {summary['contacts']}")


async def test_database_restart_under_load(kafka: str, tmp_path: Path) -> None:
    pg = await asyncio.to_thread(start_postgres, tmp_path / "pg", temporary=True)
    await migrate_async(pg.url())
    backing = BackingServices(pg.url(), kafka, tmp_path, prefix=f"d{uuid.uuid4().hex[:6]}.")
    try:
        async with pipeline(backing, tmp_path) as run:
            load, client = run.load, run.client
            await load.burst(client, 20)
            running = asyncio.create_task(load.burst(client, 120, concurrency=4))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(pg.pause)
            during = await client.post(f"{run.url('intake')}/v1/complaints",
                                       json={"kind": "report"}, headers=bearer(run.partner))
            await asyncio.sleep(2)
            await asyncio.to_thread(pg.resume)
            await running
            await load.burst(client, 20)
            codes = load.codes()
            assert set(codes) <= {201, 503}, codes
            assert codes[503] >= 1 or during.status_code == 503
            # The partner's caller is kept by the server (shared/token_cache.py), so its
            # malformed body can be refused without the database (422); a look-up would have
            # found the database away (503).
            assert during.status_code in (401, 422, 503)
            assert not load.errors, load.errors[:3]
            assert load.slowest() < 20
            accepted = len(load.accepted)
            summary = await run.counted(accepted)
        print(f"\ndatabase restart: sent {sum(codes.values())}, accepted {accepted}, "
              f"refused with 503 {codes[503]}, counted {summary['contacts']}, "
              f"slowest answer {load.slowest():.2f}s")
    finally:
        pg.stop()


async def test_rolling_restart_loses_nothing(
    kafka_services: BackingServices, tmp_path: Path,
) -> None:
    async with pipeline(kafka_services, tmp_path) as run:
        load, client = run.load, run.client
        await load.burst(client, 40)
        for name in ("case", "metrics"):
            posting = asyncio.create_task(load.burst(client, 40))
            assert graceful(run.processes[name])
            await run.restart(name, f"{name}-2.log")
            await posting
        # The intake service itself: SIGTERM while requests are in flight.
        posting = asyncio.create_task(load.burst(client, 40, concurrency=4))
        await asyncio.sleep(0.2)
        assert graceful(run.processes["intake"])
        await posting
        in_flight_refused = len(load.errors)
        await run.restart("intake", "intake-2.log")
        load.url = run.url("intake")
        await load.burst(client, 20)
        codes = load.codes()
        # Answered requests finished: created, or at worst refused cleanly (a body caught
        # between the client and a stopping server gets a 408 problem); never a 5xx.
        assert set(codes) <= {201, 408}, codes
        assert codes[201] >= len(load.answers) - 2
        accepted = len(load.accepted)
        summary = await run.counted(accepted)
        await cases_opened(client, run.url("case"), run.analyst, accepted)
    print(f"\nrolling restart: sent {accepted + in_flight_refused}, accepted {accepted}, "
          f"refused while stopped {in_flight_refused}, counted {summary['contacts']}")
