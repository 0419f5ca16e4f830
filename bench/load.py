"""A small HTTP/1.1 load generator on asyncio streams.

Python HTTP clients spend more CPU per request than the server under test does on this 2-core
machine; this one sends pre-built request bytes over keep-alive connections and parses only the
status line and ``Content-Length``, so the figures say more about the server than the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

# Well under the servers' keep-alive timeout (uvicorn's default: 5 s).
IDLE_REUSE_SECONDS = 2.0
TICK_SECONDS = 0.01

_paused_loads = 0
_collector_was_enabled = True
_P = ParamSpec("_P")
_T = TypeVar("_T")


def without_collector(
        load: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Runs ``load`` with the generator's garbage collector paused, and collects after it.

    The answers and tasks of a run are tens of thousands of objects that live until it ends,
    so the collector's full passes over them grow with the run: at twice the sustainable rate
    they held the generator's event loop 0.3-0.65 s every few seconds. Its requests then went
    out in bursts, each needing a connection while the answers that would have freed one sat
    unread, so the generator ran out of its connections (1,400-2,000 times in 15 s) while the
    server answered every request it was sent within its budget. Paused, the same run had none
    and its loop never lagged more than a tenth of a second after the first.
    """

    @functools.wraps(load)
    async def paused(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        global _paused_loads, _collector_was_enabled
        if not _paused_loads:  # loads run side by side pause it once, the last resumes it
            _collector_was_enabled = gc.isenabled()
            gc.collect()
            gc.freeze()
            gc.disable()
        _paused_loads += 1
        try:
            return await load(*args, **kwargs)
        finally:
            _paused_loads -= 1
            if not _paused_loads:
                gc.unfreeze()
                if _collector_was_enabled:
                    gc.enable()
                gc.collect()

    return paused


def post_request(host: str, port: int, path: str, token: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


@dataclass
class Answer:
    status: int
    seconds: float
    retry_after: str | None
    body: bytes
    at: float = 0.0  # ``time.perf_counter()`` when the answer was read
    # Of ``seconds``: opening a new connection (0 on one reused), the server's accept queue
    # included.
    connecting: float = 0.0


@dataclass
class Results:
    answers: list[Answer] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    # The load generator's own delays, on a processor it shares with the server (open loop):
    # how late each request started against its schedule, and how late a 10 ms timer of the
    # generator's event loop fired. A request's time counts from its start, so a generator
    # falling behind sends fewer requests at once rather than adding its lag to theirs.
    late: list[float] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers)

    def accepted(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 201]

    def per_second(self, status: int = 201) -> float:
        return self.statuses[status] / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float, status: int = 201) -> float | None:
        return percentile_ms([a.seconds for a in self.answers if a.status == status], fraction)


def percentile_ms(seconds: list[float], fraction: float) -> float | None:
    if not seconds:
        return None
    times = sorted(seconds)
    return round(times[min(len(times) - 1, int(fraction * len(times)))] * 1000, 1)


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used_at = time.perf_counter()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> Answer:
        began = time.perf_counter()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        now = self.used_at = time.perf_counter()
        return Answer(status, now - began, headers.get("retry-after"), body, now)

    def close(self) -> None:
        self.writer.close()


@without_collector
async def closed_loop(host: str, port: int, requests: list[bytes], *, clients: int,
                      seconds: float) -> Results:
    """``clients`` connections, each sending its next request as soon as it has an answer, or,
    answered 503 with ``Retry-After``, once that time has passed, as the API asks of clients
    (one retrying at once only adds refusals for the server to send)."""
    results = Results()
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        connection = await Connection.open(host, port)
        i = n
        try:
            while time.perf_counter() < deadline:
                try:
                    answer = await connection.exchange(requests[i % len(requests)])
                    results.answers.append(answer)
                    if answer.status == 503 and answer.retry_after:
                        await asyncio.sleep(min(float(answer.retry_after),
                                                max(deadline - time.perf_counter(), 0)))
                except (OSError, asyncio.IncompleteReadError) as exc:
                    results.errors[type(exc).__name__] += 1
                    connection.close()
                    connection = await Connection.open(host, port)
                i += clients
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    results.seconds = time.perf_counter() - began
    return results


@without_collector
async def open_loop(host: str, port: int, requests: list[bytes], *, rate: float,
                    seconds: float, max_connections: int = 1024,
                    timeout: float = 30.0) -> Results:
    """Requests sent at ``rate`` per second whatever the answers, as many clients would."""
    results = Results()
    idle: list[Connection] = []
    opened = 0
    tasks: list[asyncio.Task[None]] = []

    async def one(request: bytes, due: float) -> None:
        nonlocal opened
        # A request's time counts from when it was sent: waiting for a new connection (the
        # server's accept queue) is part of what its client sees.
        began = time.perf_counter()
        results.late.append(began - due)
        # A connection left idle may have been closed by the server's keep-alive timeout
        # meanwhile (a client would not reuse it either): those are closed, not used.
        while idle and time.perf_counter() - idle[-1].used_at > IDLE_REUSE_SECONDS:
            idle.pop().close()
            opened -= 1
        connected = began
        if idle:
            connection = idle.pop()
        elif opened < max_connections:
            opened += 1
            try:
                async with asyncio.timeout(timeout):
                    connection = await Connection.open(host, port)
            except (OSError, TimeoutError) as exc:
                results.errors[f"connect: {type(exc).__name__}"] += 1
                opened -= 1
                return
            connected = time.perf_counter()
        else:
            results.errors["client connections exhausted"] += 1
            return
        try:
            async with asyncio.timeout(timeout):
                answer = await connection.exchange(request)
            answer.seconds = answer.at - began
            answer.connecting = connected - began
            results.answers.append(answer)
            idle.append(connection)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            results.errors[type(exc).__name__] += 1
            connection.close()
            opened -= 1

    async def timer() -> None:
        while True:
            ticked = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            results.loop_lag.append(time.perf_counter() - ticked - TICK_SECONDS)

    ticking = asyncio.create_task(timer())
    began = time.perf_counter()
    total = int(rate * seconds)
    for n in range(total):
        due = began + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(requests[n % len(requests)], due)))
    await asyncio.gather(*tasks)
    results.seconds = time.perf_counter() - began
    ticking.cancel()
    for connection in idle:
        with contextlib.suppress(Exception):
            connection.close()
    return results
