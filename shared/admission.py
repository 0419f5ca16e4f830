"""Bounded admission: a saturated service says so at once instead of queueing without end.

At most ``limit`` requests run at a time; up to ``queue`` more wait for a slot, first come first
served. Every request has a budget of ``wait`` seconds counted from its arrival, when the server
read its first byte (``ARRIVED``, stamped by services/httpserver.py): time spent before it
reached this middleware, while the event loop was busy with others, counts too. A request is
answered 503 problem JSON with ``Retry-After`` as soon as it is clear it cannot be served within
its budget: at once when it is already too old, when the queue is full, or when waiting for the
requests ahead of it and then running itself would take longer than it has left (judged from
how long requests have recently held a slot); otherwise when it has not started while there was
still that long left. The refusal reads nothing, looks up nothing and touches no database, so
the requests already admitted keep their pace. A request is refused only before it starts, so
an answer of 201 still always means committed.

When the processor is short (other work on the machine), every running request takes longer;
running fewer at once then gets as much done, each sooner. So while requests hold their slot
longer than half the budget, fewer slots are used (down to one), and more again, up to
``limit``, once they are quick and all busy. An admitted request is thus answered within about
the budget however slow the machine has become.

The HTTP server applies the same rule before a request reaches the app (``Gate``): a request
that would be refused here is answered there, straight from the protocol, before any task is
created for it and before any other middleware runs; the access log is still told, so the
refusal gets its log line and is counted. Such a refusal costs a small fraction of a request
served, so a server offered twice what it can do keeps its processor for the requests it
admits, and its event loop reads the next requests soon instead of leaving them unread in the
socket.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.problems import overloaded

logger = logging.getLogger(__name__)

# Probes must answer while the service is busy: that is when they matter.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
# The scope key holding the event loop's time (``loop.time()``) at which the server read the
# request's first byte; absent (a server that does not stamp it), arrival is when it gets here.
ARRIVED = "aduan.arrived"
# The scope key under which the HTTP server hands admission its ``Gate``.
GATE = "aduan.gate"
# How much each finished request moves the estimate of the time a request holds a slot.
SMOOTHING = 0.1
FIRST_ESTIMATE_SECONDS = 0.05
AT_CAPACITY = "The service is at capacity; retry after the time in Retry-After."


class Gate:
    """Where admission and the HTTP server in front of it meet (services/httpserver.py): the
    server puts its gate in every request's scope, admission records itself in it, and the
    server then asks ``Admission.full`` before it hands the next request to the app."""

    def __init__(self) -> None:
        self.admission: Admission | None = None
        # Told of each answer the server gives without the app (the request's scope, status,
        # seconds from arrival), it answers with the request id to return: the access log
        # records itself here, so its lines and figures include those answers.
        self.answered_before_app: Callable[[Scope, int, float], str] | None = None


class Admission:
    def __init__(self, app: ASGIApp, *, limit: int, queue: int, wait: float) -> None:
        self.app = app
        self.limit = limit
        self.queue = queue
        self.wait = wait
        self.running = 0
        # Slots in use now: ``limit``, or fewer while requests hold their slot too long.
        self.slots = limit
        self._resized = 0.0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        # Seconds a request holds a slot, smoothed.
        self.held = FIRST_ESTIMATE_SECONDS
        self.refused = 0

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or self.limit <= 0:
            await self.app(scope, receive, send)
            return
        gate = scope.get(GATE)
        if isinstance(gate, Gate):
            gate.admission = self
        loop = asyncio.get_running_loop()
        arrived = scope.get(ARRIVED)
        deadline = (arrived if isinstance(arrived, float) else loop.time()) + self.wait
        if not await self._admit(loop, deadline):
            await self._refuse(scope, receive, send)
            return
        began = loop.time()
        try:
            await self.app(scope, receive, send)
        finally:
            now = loop.time()
            self.held += SMOOTHING * (now - began - self.held)
            self._resize(now)
            self._release()

    def full(self) -> bool:
        """Whether a request arriving now would be refused: the rule of ``_admit``, applied to
        the requests admission holds (running, or waiting for a slot). Requests still on their
        way to it (a body being read, by a slow client perhaps) are not counted: they may never
        come, and admission refuses them itself if they do when it is full.
        """
        if self.limit <= 0:
            return False
        ahead = self.running + len(self.waiting) - self.slots
        if ahead < 0:
            return False
        return (ahead >= self.queue
                or (ahead + 1) * self.held / self.slots + self.held > self.wait)

    def count_refusal(self) -> None:
        self.refused += 1
        if self.refused % 1000 == 1:
            logger.warning("saturated: %d requests refused so far (%d of %d slots in use, "
                           "queue %d; a request holds its slot %.3f s)", self.refused,
                           self.slots, self.limit, self.queue, self.held)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.count_refusal()
        await overloaded(AT_CAPACITY, retry_after=self.retry_after).response()(
            scope, receive, send)

    async def _admit(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        now = loop.time()
        if now >= deadline:
            return False  # it waited its whole budget before it got here
        if self.running < self.slots and not self.waiting:
            self.running += 1
            return True
        # With every slot busy, one frees every ``held / slots`` seconds: a request would start
        # after those ahead of it, and end about ``held`` later.
        ahead = len(self.waiting)
        if ahead >= self.queue or now + (ahead + 1) * self.held / self.slots + self.held > deadline:
            return False
        place: asyncio.Future[None] = loop.create_future()
        self.waiting.append(place)
        try:
            # Started any later, it would likely not be done within its budget.
            async with asyncio.timeout_at(deadline - self.held):
                await place
            return True
        except TimeoutError:
            # A slot handed over just as the budget ran out is taken all the same.
            return place.done() and not place.cancelled()
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                self._release()  # handed over, but nobody will use it
            raise
        finally:
            if not place.done():
                place.cancel()
            if place in self.waiting:
                self.waiting.remove(place)

    def _resize(self, now: float) -> None:
        """Fewer slots while requests hold theirs over half the budget; more once they are
        quick and all busy. One step at a time, each given the time of a request to show."""
        if now - self._resized < self.held:
            return
        if self.held > self.wait / 2 and self.slots > 1:
            self.slots -= max(1, self.slots // 4)
        elif self.held < self.wait / 4 and self.running >= self.slots < self.limit:
            self.slots += 1
        else:
            return
        self._resized = now

    def _release(self) -> None:
        """Hands the slot to the longest waiting request, or frees it (or gives it up, when
        fewer slots are in use than are running)."""
        while self.waiting and self.running <= self.slots:
            place = self.waiting.popleft()
            if not place.done():
                place.set_result(None)
                return
        self.running -= 1
