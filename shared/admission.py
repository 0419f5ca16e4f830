"""Bounded admission: a saturated service says so at once instead of queueing without end.

At most ``limit`` requests run at a time; up to ``queue`` more wait for a slot, first come first
served. Every request has a budget of ``wait`` seconds counted from its arrival, when the server
read its first byte (``ARRIVED``, stamped by services/httpserver.py): time spent before it
reached this middleware, while the event loop was busy with others, counts too.

The rule (``verdict``, the one place it is decided): a request already older than its budget is
refused; one that finds a slot free and nobody waiting runs; otherwise it may wait for a slot
unless the queue is full, it is too late to start and still run within its budget (by the
typical run, below), or the queue is *standing*: its oldest request has waited longer than
``queue_delay`` seconds (the target) at every look for a whole ``interval`` (below). A request
that waits is refused if it has not started while there was still time to run within its
budget. Refusals are 503 problem JSON with ``Retry-After``; they
read nothing, look up nothing and touch no database, so the requests already admitted keep their
pace. A request is refused only before it starts, so an answer of 201 still always means
committed.

Why the queue's own delay, and not a forecast. Every slot in use, a queue adds no throughput: it
only keeps a slot from standing empty between one request and the next, which a handful of
requests does. What it adds is latency, and that latency is exactly what the age of its oldest
request measures, as it happens (CoDel's sojourn time, read at the head rather than at the
exit): no estimate of how long requests run and no rate to divide by. An earlier rule forecast a
newcomer's wait from a smoothed run time per request and admitted while the forecast fitted the
whole budget. A group commit that stalled (intake_api/group_commit.py) then finished dozens of
requests at once with long run times, the smoothed figure jumped, and admission refused nearly
everything until it decayed, then over-admitted, since a budget-sized queue is what that rule
aims for: under twice the sustainable load the accepted share swung between runs from half to
four fifths of the sustainable rate, and accepted answers waited most of the budget (p50 0.8 s).
Judged by the queue's age, a stall shuts admission exactly while it lasts (the head ages), and
the burst of completions that ends it opens admission at once (the queue moves): nothing to
decay. And the queue holds about ``queue_delay`` of work, not the whole budget, so an accepted
request is answered in about ``queue_delay`` plus its own run. (Letting the queue hold one
typical run instead, when runs took longer than ``queue_delay`` on a machine short of processor,
gave up most of the gain under overload there: the queue grew with the runs.)

Why a whole interval above the target, and not the target alone (CoDel's interval). A healthy
service stalls now and then for a few tenths of a second: a full collection of the garbage
collector, a commit that waits for the disk, the processor taken by another program. Every
slot then stays busy while requests queue, and the oldest soon waited longer than the target;
refusing at once refused hundreds of requests at 300 complaints a second (of 18,000, with the
same stalls at 0.1 s as at 0.25 s: the stalls outlasted either) from a service that caught up as
soon as the stall ended. The target is the delay a queue may hold for good; the interval is how
long it may hold more while it drains. So a queue counts as standing only once its oldest
request has been above the target at every look for ``interval`` seconds (0.5 s by default):
longer than a stall, and short enough that real overload is refused within about a second of
its start (target plus interval), while the budget still bounds every request's wait. Once it
has refused for a standing queue, admission remembers it for ``remember`` seconds (5 s by
default) after its last such refusal: a queue above the target again within them is the same
overload coming back (the queue emptied only because newcomers were refused), and is refused
at once rather than after another interval, as CoDel resumes dropping where it left off.
Remembering it for one interval only let every lull of sustained overload open a new interval,
whose queue of half a second held each request waiting in it: at twice the sustainable rate
the accepted p99 was 1.4-1.5 s, against 0.8-0.9 s remembering it for 5 s, measured back to
back; a stall of a healthy service seconds after an overload ended is the price. A bound
scaled by the typical run was the other choice: it answers a slow machine, not a stall,
whose requests are as quick as ever before and after it.

When the processor is short (other work on the machine), every running request takes longer;
running fewer at once then gets as much done, each sooner. So while requests typically hold
their slot longer than half the budget, fewer slots are used, and more again, up to ``limit``,
once they are quick and all busy. Never fewer than a quarter of ``limit``, though: much of a
request's run is a wait on PostgreSQL, and the complaints of concurrent requests share one
commit (intake_api/group_commit.py), so a handful of slots keeps the processor busy through
those waits and a group forming. Allowed down to one, the rule took an intake worker on a
machine loaded six times over (load average 12 on two cores, 300 complaints a second offered)
from 24 slots to one within 20 s, its typical run 0.5-1.7 s: with one slot no group forms, and
each complaint pays a commit of its own. "Typically" is the median of the last runs, over a
window four times the slots: a burst of completions is at most the slots in use, so a
stalled group commit cannot move it alone, while a machine that stays slow does.

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
import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

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
# A request's run before any has finished: the typical run then is a guess.
FIRST_RUN_SECONDS = 0.05
# Recent runs kept for their median, per slot (and at least this many in all).
RUNS_PER_SLOT = 4
RUNS_AT_LEAST = 64
# The default for ``queue_delay``: the settings' (ADUAN_ADMISSION_QUEUE_DELAY_SECONDS).
QUEUE_DELAY_SECONDS = 0.1
# The default for ``interval``: the settings' (ADUAN_ADMISSION_INTERVAL_SECONDS).
INTERVAL_SECONDS = 0.5
# The default for ``remember``: how long a refusal for a standing queue is remembered.
REMEMBER_SECONDS = 5.0
AT_CAPACITY = "The service is at capacity; retry after the time in Retry-After."


class Verdict(enum.Enum):
    RUN = "run"
    WAIT = "wait"
    REFUSE = "refuse"


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


@dataclass(eq=False)
class _Waiting:
    """A request waiting for a slot: when it arrived, and where it is told it has one."""

    arrived: float
    place: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Admission:
    def __init__(self, app: ASGIApp, *, limit: int, queue: int, wait: float,
                 queue_delay: float = QUEUE_DELAY_SECONDS,
                 interval: float = INTERVAL_SECONDS,
                 remember: float = REMEMBER_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.queue = queue
        self.wait = wait
        self.queue_delay = queue_delay
        self.interval = interval
        self.remember = remember
        # Since when the oldest waiting request has been above the target at every look (None:
        # it was not at the last), and when a standing queue was last refused for.
        self._above_since: float | None = None
        self._refused_standing = -math.inf
        self.running = 0
        # Slots in use now: ``limit``, or fewer while requests hold their slot too long.
        self.slots = limit
        self.fewest_slots = max(1, limit // 4)
        self._resized = 0.0
        self.waiting: collections.deque[_Waiting] = collections.deque()
        # Seconds the last requests held a slot, and their median.
        self.runs: collections.deque[float] = collections.deque(
            maxlen=max(RUNS_AT_LEAST, RUNS_PER_SLOT * limit))
        self.typical_run = FIRST_RUN_SECONDS
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
        stamped = scope.get(ARRIVED)
        arrived = stamped if isinstance(stamped, float) else loop.time()
        if not await self._admit(loop, arrived):
            await self._refuse(scope, receive, send)
            return
        began = loop.time()
        try:
            await self.app(scope, receive, send)
        finally:
            self.finished(began, loop.time())
            self._release()

    def full(self) -> bool:
        """Whether a request arriving now would be refused. Requests still on their way to
        admission (a body being read, by a slow client perhaps) are not counted: they may never
        come, and admission refuses them itself if they do when it is full."""
        if self.limit <= 0:
            return False
        now = asyncio.get_running_loop().time()
        return self.verdict(now, now) is Verdict.REFUSE

    def verdict(self, arrived: float, now: float) -> Verdict:
        """What becomes, at ``now``, of a request that arrived at ``arrived`` (the event loop's
        times): the one place the rule is decided."""
        if now - arrived >= self.wait:
            return Verdict.REFUSE  # it waited its whole budget before it got here
        if self.running < self.slots and not self.waiting:
            return Verdict.RUN
        if len(self.waiting) >= self.queue or now - arrived + self.typical_run >= self.wait:
            return Verdict.REFUSE  # no room, or too late to start and still run within budget
        if self._standing(now):
            return Verdict.REFUSE  # a standing queue: another request would only add delay
        return Verdict.WAIT

    def _standing(self, now: float) -> bool:
        """Whether the queue is standing at ``now``: its oldest request above the target at
        every look for ``interval``, or again within ``remember`` of a refusal for a standing
        queue."""
        if not self.waiting or now - self.waiting[0].arrived <= self.queue_delay:
            self._above_since = None
            return False
        if self._above_since is None:
            self._above_since = now
        if (now - self._above_since >= self.interval
                or now - self._refused_standing < self.remember):
            self._refused_standing = now
            return True
        return False

    def finished(self, began: float, now: float) -> None:
        """Records a run that held its slot from ``began`` to ``now``."""
        self.runs.append(now - began)
        self.typical_run = sorted(self.runs)[len(self.runs) // 2]
        self._resize(now)

    def count_refusal(self) -> None:
        self.refused += 1
        if self.refused % 1000 == 1:
            logger.warning("saturated: %d requests refused so far (%d of %d slots in use, "
                           "%d waiting; a request typically holds its slot %.3f s)",
                           self.refused, self.slots, self.limit, len(self.waiting),
                           self.typical_run)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.count_refusal()
        await overloaded(AT_CAPACITY, retry_after=self.retry_after).response()(
            scope, receive, send)

    async def _admit(self, loop: asyncio.AbstractEventLoop, arrived: float) -> bool:
        verdict = self.verdict(arrived, loop.time())
        if verdict is Verdict.RUN:
            self.running += 1
        if verdict is not Verdict.WAIT:
            return verdict is Verdict.RUN
        waiting = _Waiting(arrived)
        self.waiting.append(waiting)
        try:
            # Started any later, it would likely not be done within its budget.
            async with asyncio.timeout_at(arrived + self.wait - self.typical_run):
                await waiting.place
            return True
        except TimeoutError:
            # A slot handed over just as the budget ran out is taken all the same.
            return waiting.place.done() and not waiting.place.cancelled()
        except asyncio.CancelledError:
            if waiting.place.done() and not waiting.place.cancelled():
                self._release()  # handed over, but nobody will use it
            raise
        finally:
            if not waiting.place.done():
                waiting.place.cancel()
            if waiting in self.waiting:
                self.waiting.remove(waiting)
                self._forget_if_empty()

    def _resize(self, now: float) -> None:
        """Fewer slots while requests typically hold theirs over half the budget; more once they
        are quick and all busy. One step at a time, each given the time of a request to show."""
        if now - self._resized < self.typical_run:
            return
        if self.typical_run > self.wait / 2 and self.slots > self.fewest_slots:
            self.slots = max(self.fewest_slots, self.slots - max(1, self.slots // 4))
        elif self.typical_run < self.wait / 4 and self.running >= self.slots < self.limit:
            self.slots += 1
        else:
            return
        self._resized = now

    def _release(self) -> None:
        """Hands the slot to the longest waiting request, or frees it (or gives it up, when
        fewer slots are in use than are running)."""
        while self.waiting and self.running <= self.slots:
            waiting = self.waiting.popleft()
            self._forget_if_empty()
            if not waiting.place.done():
                waiting.place.set_result(None)
                return
        self.running -= 1

    def _forget_if_empty(self) -> None:
        """An empty queue is below the target, whether or not anyone looked just then."""
        if not self.waiting:
            self._above_since = None
