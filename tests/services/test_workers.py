"""``aduan serve`` with HTTP worker processes, as the real command runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from services.workers import share_of
from shared.settings import Settings
from tests.faults import cases_opened
from tests.support import BackingServices, ServiceProcess, bearer, complaint, eventually

pytestmark = pytest.mark.timeout(180)


def workers_of(main: ServiceProcess) -> list[int]:
    assert main.process is not None
    found = subprocess.run(["pgrep", "-P", str(main.process.pid)],
                           capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if alive(int(pid))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def requests_answered(metrics: str, route: str, status: str) -> float:
    for line in metrics.splitlines():
        if (line.startswith("aduan_http_requests_total{") and f'route="{route}"' in line
                and f'status="{status}"' in line and 'method="POST"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_workers_share_the_port_and_the_main_process_counts_them_all(
    services: BackingServices, tmp_path: Path,
) -> None:
    main = ServiceProcess("all", services.env(ADUAN_HTTP_WORKERS="2"),
                          tmp_path / "serve.log").start()
    try:
        await main.wait_ready()
        workers = await eventually(_two(main), timeout=30)
        token = await services.token("partner")
        # Separate connections, so both workers take some of them.
        clients = [httpx.AsyncClient(timeout=30) for _ in range(8)]
        try:
            answers = await asyncio.gather(*(
                client.post(f"{main.url}/v1/complaints", headers=bearer(token),
                            json=complaint(external_reference=f"W-{n}-{i}"))
                for n, client in enumerate(clients) for i in range(5)))
        finally:
            await asyncio.gather(*(client.aclose() for client in clients))
        assert [a.status_code for a in answers] == [201] * 40, answers[0].text
        analyst = await services.token("analyst")
        async with httpx.AsyncClient(timeout=30) as client:
            # The main process runs the consumers: every complaint opens its case.
            await cases_opened(client, main.url, analyst, 40, timeout=60)
            metrics = (await client.get(f"{main.url}/metrics")).text
        # Counted in whichever worker answered, summed by the main process.
        assert requests_answered(metrics, "/v1/complaints", "201") == 40, metrics[:2000]
        assert "aduan_outbox_backlog" in metrics or "aduan_consumer_lag" in metrics

        # A worker that dies is replaced.
        os.kill(workers[0], signal.SIGKILL)

        async def replaced() -> list[int]:
            now = workers_of(main)
            assert len(now) == 2, now
            assert workers[0] not in now, now
            return now

        workers = await eventually(replaced, timeout=30)
        # A stop signal ends the workers and then the main process, gracefully.
        assert main.stop() in (0, -15), main.log_tail()
        assert "Application shutdown complete" in main.log_tail()
        assert not any(alive(pid) for pid in workers)
    finally:
        main.stop(kill=True)


async def test_workers_end_with_a_killed_main_process(
    services: BackingServices, tmp_path: Path,
) -> None:
    main = ServiceProcess("intake", services.env(ADUAN_HTTP_WORKERS="2"),
                          tmp_path / "serve.log").start()
    try:
        await main.wait_ready()
        workers = await eventually(_two(main), timeout=30)
        main.stop(kill=True)

        async def gone() -> None:
            assert not any(alive(pid) for pid in workers)

        await eventually(gone, timeout=15)
    finally:
        main.stop(kill=True)


def _two(main: ServiceProcess) -> Callable[[], Awaitable[list[int]]]:
    async def check() -> list[int]:
        found = workers_of(main)
        assert len(found) == 2, found
        return found

    return check


def test_the_rate_limits_are_shared_among_workers() -> None:
    settings = Settings(rate_limit_per_minute=1200, public_status_per_minute=10)
    share = share_of(settings, 3)
    assert share.rate_limit_per_minute == 400
    assert share.public_status_per_minute == 4  # rounded up: never below one a minute
    assert share_of(Settings(rate_limit_per_minute=0), 2).rate_limit_per_minute == 0  # no limit
