"""Helpers for the fault tests: load that records every answer, and figures to compare."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.scenario import period_params
from tests.support import bearer, complaint, eventually

# How long a patient partner keeps posting one complaint again before it gives up.
PATIENCE_SECONDS = 120


@dataclass
class Load:
    """Posts complaints and remembers every answer (status, seconds)."""

    url: str
    token: str
    answers: list[tuple[int, float]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Answers a patient partner did not take as final (503 or no answer), then posted again.
    retried: list[str] = field(default_factory=list)

    async def post(self, client: httpx.AsyncClient, index: int, *,
                   patient: bool = False) -> None:
        """``patient``: as a partner that sends an ``Idempotency-Key`` would, posts again after
        a 503 (once its ``Retry-After`` has passed) or no answer, until a final answer; a
        complaint an unanswered attempt did store is then answered again, not stored twice."""
        started = time.monotonic()
        body = complaint(external_reference=f"L-{index}")
        headers = {**bearer(self.token), "Idempotency-Key": f"load-{index}"} if patient \
            else bearer(self.token)
        while True:
            try:
                response = await client.post(f"{self.url}/v1/complaints", json=body,
                                             headers=headers, timeout=30)
            except httpx.HTTPError as exc:
                if not patient or time.monotonic() - started > PATIENCE_SECONDS:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    return
                self.retried.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1)
                continue
            if not patient or not _not_final(response) \
                    or time.monotonic() - started > PATIENCE_SECONDS:
                break
            self.retried.append(f"{response.status_code}: {response.text}")
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        self.answers.append((response.status_code, time.monotonic() - started))
        if response.status_code == 201:
            self.accepted.append(response.json()["id"])
        else:
            assert response.headers["content-type"] == "application/problem+json", response.text

    async def burst(self, client: httpx.AsyncClient, count: int, *, concurrency: int = 8,
                    patient: bool = False) -> None:
        semaphore = asyncio.Semaphore(concurrency)
        start = len(self.answers) + len(self.errors)

        async def one(i: int) -> None:
            async with semaphore:
                await self.post(client, start + i, patient=patient)

        await asyncio.gather(*(one(i) for i in range(count)))

    def codes(self) -> Counter[int]:
        return Counter(code for code, _ in self.answers)

    def slowest(self) -> float:
        return max((seconds for _, seconds in self.answers), default=0.0)


async def contacts_counted(client: httpx.AsyncClient, metrics_url: str, token: str,
                           expected: int, *, timeout: float = 120) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        response = await client.get(f"{metrics_url}/v1/metrics/summary",
                                    params=period_params(), headers=bearer(token))
        assert response.status_code == 200, response.text
        summary: dict[str, Any] = response.json()
        assert summary["contacts"] == expected, (summary["contacts"], expected)
        return summary

    return await eventually(check, timeout=timeout, interval=0.5)


async def cases_opened(client: httpx.AsyncClient, case_url: str, token: str,
                       expected: int, *, timeout: float = 120) -> None:
    async def check() -> None:
        seen = 0
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(f"{case_url}/v1/cases", params=params,
                                     headers=bearer(token))).json()
            seen += len(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, (seen, expected)

    await eventually(check, timeout=timeout, interval=0.5)


def _not_final(response: httpx.Response) -> bool:
    """503, or 409 while the same Idempotency-Key's first post is still in flight (a 409 for a
    duplicate ``external_reference`` names the first complaint, and is final)."""
    if response.status_code == 503:
        return True
    return response.status_code == 409 and "complaint_id" not in response.json()


def server_processes(data_dir: Path) -> list[int]:
    """The PostgreSQL server's postmaster (from its ``postmaster.pid``) and its children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The parent's pid is the second field after the command, which is in parentheses.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


@contextlib.contextmanager
def frozen(data_dir: Path) -> Iterator[None]:
    """The server stalled, as a frozen host or a stuck disk would stall it: every one of its
    processes stopped (SIGSTOP; its sockets stay open and take what clients send), resumed
    (SIGCONT) on leaving, whatever happened meanwhile. The postmaster is stopped first, so it
    starts no process that would be left running."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    try:
        for pid in server_processes(data_dir)[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
