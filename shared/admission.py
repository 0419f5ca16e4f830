"""Bounded admission: a saturated service says so at once instead of queueing without end.

At most ``limit`` requests run at a time; up to ``queue`` more wait for a slot, each for at most
``wait`` seconds. Anything beyond is answered 503 problem JSON with ``Retry-After`` straight
away, before it touches the database, so the requests already admitted keep their latency and a
client is never held for tens of seconds. A request is refused only before it starts, so an
answer of 201 still always means committed.
"""

from __future__ import annotations

import asyncio
import logging
import math

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.middleware import send_problem

logger = logging.getLogger(__name__)

# Probes must answer while the service is busy: that is when they matter.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


class Admission:
    def __init__(self, app: ASGIApp, *, limit: int, queue: int, wait: float) -> None:
        self.app = app
        self.limit = limit
        self.queue = queue
        self.wait = wait
        self.slots = asyncio.Semaphore(limit)
        self.waiting = 0
        self.refused = 0

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.wait)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or self.limit <= 0:
            await self.app(scope, receive, send)
            return
        if not await self._admit():
            self.refused += 1
            if self.refused % 1000 == 1:
                logger.warning("saturated: %d requests refused so far (limit %d, queue %d)",
                               self.refused, self.limit, self.queue)
            await send_problem(send, 503, "overloaded", "Service overloaded",
                               "The service is at capacity; retry after the time in "
                               "Retry-After.", headers={"Retry-After": self.retry_after})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()

    async def _admit(self) -> bool:
        if not self.slots.locked():
            await self.slots.acquire()  # free: returns at once
            return True
        if self.waiting >= self.queue:
            return False
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait):
                await self.slots.acquire()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1
