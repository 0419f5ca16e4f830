"""``aduan serve`` with HTTP worker processes, as the real command runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

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


Send = Callable[[], Awaitable[httpx.Response]]


@dataclass
class Burst:
    """Requests sent one after another until the first 429, and when."""

    admitted: int
    began: float  # before the first was sent
    refusal_sent: float  # before the refused one was sent
    refused: float  # when its answer came


async def burst(send: Send) -> Burst:
    began = time.monotonic()
    admitted = 0
    while True:
        sent = time.monotonic()
        answer = await send()
        if answer.status_code != 429:
            assert answer.status_code in (200, 201), answer.text
            admitted += 1
            assert admitted <= 60, "never refused"
            continue
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 429
        assert int(answer.headers["retry-after"]) >= 1
        return Burst(admitted, began, sent, time.monotonic())


def within_limit(burst: Burst, per_minute: int) -> None:
    """A minute's worth at once, and no more than one back for each ``60 / per_minute``
    seconds the burst lasted (a loaded machine may be slow enough for that to show)."""
    back = (burst.refused - burst.began) * per_minute / 60
    assert per_minute <= burst.admitted <= per_minute + back, (burst, back)


def carried_over(before: Burst, after: Burst, per_minute: int) -> None:
    """``after`` began where ``before`` left off: less than one back when refused, plus what
    the time since gave, never a fresh minute's worth."""
    back = (after.refused - before.refusal_sent) * per_minute / 60
    assert after.admitted <= 1 + back, (before, after, back)
    assert after.admitted < per_minute, (before, after)


async def test_the_rate_limits_hold_across_workers_and_their_restarts(
    services: BackingServices, tmp_path: Path,
) -> None:
    # The per-address limit of status lookups at its default (10 a minute: one back each 6 s),
    # the per-token one at 20 a minute (one back each 3 s).
    main = ServiceProcess("all", services.env(ADUAN_HTTP_WORKERS="2",
                                              ADUAN_RATE_LIMIT_PER_MINUTE="20"),
                          tmp_path / "serve.log").start()
    try:
        await main.wait_ready()
        workers = await eventually(_two(main), timeout=30)
        async with httpx.AsyncClient(timeout=30) as client:
            created = (await client.post(f"{main.url}/v1/complaints", json=complaint(),
                                         headers=bearer(await services.token("partner")))).json()
        asked = {"tracking_number": created["tracking_number"],
                 "access_code": created["access_code"]}

        def from_address(address: str) -> httpx.AsyncClient:
            # Every 127/8 address is this machine's: each stands for a client of its own.
            return httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address=address), timeout=30)

        def on_new_connections(address: str, path: str, body: dict[str, Any],
                               headers: dict[str, str] | None = None) -> Send:
            async def send() -> httpx.Response:
                async with from_address(address) as client:
                    return await client.post(f"{main.url}{path}", json=body, headers=headers)
            return send

        # One keep-alive connection reaches one worker; new ones reach either.
        async with from_address("127.0.0.2") as kept:
            async def lookup() -> httpx.Response:
                return await kept.post(f"{main.url}/public/status", json=asked)
            within_limit(await burst(lookup), 10)
        lookups = await burst(on_new_connections("127.0.0.3", "/public/status", asked))
        within_limit(lookups, 10)

        partner = bearer(await services.token("partner"))
        async with httpx.AsyncClient(timeout=30) as kept:
            async def post() -> httpx.Response:
                return await kept.post(f"{main.url}/v1/complaints", headers=partner,
                                       json=complaint())
            within_limit(await burst(post), 20)
        another = bearer(await services.token("partner"))
        posts = await burst(on_new_connections("127.0.0.1", "/v1/complaints", complaint(),
                                               another))
        within_limit(posts, 20)

        # Workers started again (both: every request now reaches one) keep the same counts.
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

        async def replaced() -> None:
            now = workers_of(main)
            assert len(now) == 2, now
            assert not set(now) & set(workers), now

        await eventually(replaced, timeout=60)
        carried_over(lookups, await burst(
            on_new_connections("127.0.0.3", "/public/status", asked)), 10)
        carried_over(posts, await burst(
            on_new_connections("127.0.0.1", "/v1/complaints", complaint(), another)), 20)
        # ... and a caller they have not seen yet is welcome.
        async with from_address("127.0.0.4") as client:
            assert (await client.post(f"{main.url}/public/status", json=asked)).status_code == 200
    finally:
        main.stop(kill=True)
