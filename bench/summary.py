"""How fast ``GET /v1/metrics/summary`` and ``GET /v1/metrics/monthly`` answer over a million
cases.

The figure is measured side by side with a reference in the same run, because these machines are
shared and noisy: the reference is one sequential scan of ``metrics.cases`` computing a single
figure ("handled") the direct way. A ratio under 1 means the whole summary costs less than that
one scan.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from metrics_worker import aggregates, counts
from services.allinone import create_app
from services.migrate import migrate_async
from services.postgres import start_postgres
from shared.auth import Role, create_token
from shared.db import Database, asyncpg_dsn
from shared.settings import Settings

DATA = Path(__file__).with_name("data.sql")
TABLES = [f"metrics.{t}" for t in ("contacts", "cases", "transitions", "daily_counts",
                                   "period_counts", "duration_histograms")]
PERIODS = {"quarter 2022-Q1": {"period": "2022-Q1"}, "year 2022": {"period": "2022"},
           "month 2024-06": {"period": "2024-06"},
           "eight years": {"from": "2018-01-01", "to": "2025-12-31"}}
# ``GET /v1/metrics/monthly`` over the same periods, ungrouped and by agency (the most groups:
# 60 agencies, so eight years are 5,760 rows).
MONTHLY_GROUPS = ("none", "agency")
REFERENCE = """
    SELECT count(*) FROM metrics.cases
    WHERE received_at < $2 AND (closed_at IS NULL OR closed_at >= $1)"""


@dataclass
class Timing:
    label: str
    path: str
    median_ms: float
    p99_ms: float
    reference_ms: float
    # CPU time per summary, of this process (the app and its client) and of every PostgreSQL
    # process: unlike wall time, it hardly moves when other work shares the cores.
    app_cpu_ms: float
    postgres_cpu_ms: float | None

    @property
    def ratio(self) -> float:
        return self.median_ms / self.reference_ms


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def _p99_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1)


async def _load(url: str, cases: int) -> int:
    contacts = cases * 8 // 7  # one kind in eight (consultations) opens no case
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(DATA.read_text().replace(":contacts", str(contacts)).replace(
            "/*PLACE_AND_LIAISON_INCREMENTS*/", counts.PLACE_AND_LIAISON_INCREMENTS).replace(
            "/*MONTHLY_INCREMENTS*/", counts.MONTHLY_INCREMENTS))
        await connection.execute(aggregates.DURATION_HISTOGRAMS)
        # As autovacuum leaves a settled table: statistics, and pages marked all-visible.
        await connection.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
        return int(await connection.fetchval("SELECT count(*) FROM metrics.cases"))
    finally:
        await connection.close()


def _cpu_seconds(pids: list[int]) -> float:
    """User and system time of these processes so far (gone ones count nothing)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def _postgres_pids(url: str) -> list[int]:
    """The server's processes: the postmaster and its children ([] when not readable)."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        data_dir = await connection.fetchval("SELECT current_setting('data_directory')")
    finally:
        await connection.close()
    return _server_processes(Path(data_dir))


def _server_processes(data_dir: Path) -> list[int]:
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


async def _reference(url: str, params: dict[str, str], repeat: int) -> float:
    from metrics_worker.periods import period_from_query

    period = period_from_query(params.get("period"), None, None) if "period" in params else \
        period_from_query(None, *(__import__("datetime").date.fromisoformat(params[k])
                                  for k in ("from", "to")))
    start, end = period.bounds(Settings().zone)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            await connection.fetchval(REFERENCE, start, end)
            samples.append(time.perf_counter() - began)
        return _median_ms(samples)
    finally:
        await connection.close()


async def run(cases: int = 1_000_000, repeat: int = 30,
              database_url: str | None = None, load: bool = True) -> dict[str, Any]:
    """``load=False`` measures the read model already in ``database_url``."""
    workdir = Path(tempfile.mkdtemp(prefix="aduan-bench-"))
    os.chmod(workdir, 0o755)  # the embedded PostgreSQL runs as its own user when run as root
    pg = None
    if database_url is None:
        pg = start_postgres(workdir / "pg", temporary=True)
        database_url = pg.url()
    try:
        await migrate_async(database_url)
        began = time.perf_counter()
        loaded = await _load(database_url, cases) if load else cases
        load_seconds = time.perf_counter() - began
        load_average_before = os.getloadavg()
        async with Database.opened(database_url) as database, \
                database.transaction() as session:
            token = await create_token(session, name=f"bench-{time.time_ns()}", role=Role.admin)
        settings = Settings(database_url=database_url, rate_limit_per_minute=0,
                            data_dir=workdir / ".aduan")
        app = create_app("metrics", settings)
        timings = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                         headers={"Authorization": f"Bearer {token}"},
                                         timeout=120) as client:
                asked = [(label, "summary", params) for label, params in PERIODS.items()]
                asked += [(f"{label}, group_by={group}", "monthly",
                           {**params, "group_by": group})
                          for group in MONTHLY_GROUPS for label, params in PERIODS.items()]
                for label, path, params in asked:
                    url = f"/v1/metrics/{path}"
                    await client.get(url, params=params)  # warm up
                    samples = []
                    pids = await _postgres_pids(database_url)
                    app_cpu, postgres_cpu = time.process_time(), _cpu_seconds(pids)
                    for _ in range(repeat):
                        began = time.perf_counter()
                        response = await client.get(url, params=params)
                        samples.append(time.perf_counter() - began)
                        response.raise_for_status()
                    app_cpu = time.process_time() - app_cpu
                    postgres_cpu = _cpu_seconds(pids) - postgres_cpu
                    reference = await _reference(database_url, params, min(repeat, 7))
                    timings.append(Timing(
                        label, path, _median_ms(samples), _p99_ms(samples), reference,
                        round(app_cpu * 1000 / repeat, 1),
                        round(postgres_cpu * 1000 / repeat, 1) if pids else None))
        return {
            "benchmark": "summary",
            "cases": loaded,
            "load_seconds": round(load_seconds, 1),
            "load_average": [round(load_average_before[0], 1), round(os.getloadavg()[0], 1)],
            "repeat": repeat,
            "reference": "one sequential scan of metrics.cases counting 'handled'",
            "results": [{"period": t.label, "summary_ms": t.median_ms, "p99_ms": t.p99_ms,
                         "app_cpu_ms": t.app_cpu_ms, "postgres_cpu_ms": t.postgres_cpu_ms,
                         "reference_ms": t.reference_ms, "ratio": round(t.ratio, 3)}
                        for t in timings if t.path == "summary"],
            # The same figures for GET /v1/metrics/monthly ("monthly_ms" its median).
            "monthly": [{"period": t.label, "monthly_ms": t.median_ms, "p99_ms": t.p99_ms,
                         "app_cpu_ms": t.app_cpu_ms, "postgres_cpu_ms": t.postgres_cpu_ms,
                         "reference_ms": t.reference_ms, "ratio": round(t.ratio, 3)}
                        for t in timings if t.path == "monthly"],
        }
    finally:
        if pg is not None:
            pg.stop()
