"""Waking database-log readers and relays with ``LISTEN``/``NOTIFY`` instead of polling.

A transaction that appended to an outbox is announced *after* it committed, by one ``NOTIFY``
on a connection of its own (``aduan_outbox_<schema>``), coalesced: many commits in a burst make
one notification. Writers never ``NOTIFY`` inside their own transaction, because PostgreSQL
serialises the commits of notifying transactions on one lock, which is exactly the queue of one
the intake path avoids. Readers ``LISTEN`` on the same connection and sleep until told, with a
slow fallback poll (``fallback_seconds``) so that a notification lost with a broken connection
delays an event, never strands it. While the listening connection is down, readers poll at
their normal pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

import asyncpg

logger = logging.getLogger(__name__)

PREFIX = "aduan_outbox_"
# At most one notification per channel and process this often (``_serve``): as long as the
# relay's own wait after a partial batch (``shared.outbox.RELAY_LINGER_SECONDS``), since a relay
# that is busy reads again by itself after that wait and a notification sooner tells it nothing.
# Each costs PostgreSQL 0.2-0.4 ms of CPU and the sender 0.1 ms (nine listening connections; at
# 300 complaints a second the HTTP workers and the case service could send up to ~150 a
# second at 20 ms).
GATHER_SECONDS = 0.05


def channel(schema: str) -> str:
    return PREFIX + schema


class Wakeup:
    def __init__(self, dsn: str, *, fallback_seconds: float = 30.0) -> None:
        self.dsn = dsn
        self.fallback_seconds = fallback_seconds
        self.listening = False
        self.notified = 0
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._pending: set[str] = set()
        self._unheard: set[str] = set()
        self._kick = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        # Other channels heard on the same connection: name -> (on a notice, on (not) hearing).
        self._watched: dict[str, tuple[Callable[[str], None], Callable[[bool], None]]] = {}

    def watch(self, name: str, heard: Callable[[str], None],
              hearing: Callable[[bool], None]) -> None:
        """Calls ``heard(payload)`` for each notification on channel ``name``, and
        ``hearing(True/False)`` when this process starts or stops listening to it. Watched
        before ``run`` starts."""
        self._watched[name] = (heard, hearing)

    def committed(self, schemas: set[str]) -> None:
        """Called once a transaction that appended to these schemas' outboxes committed."""
        self._pending |= schemas
        self._kick.set()

    def subscribe(self, *schemas: str) -> asyncio.Event:
        """An event set whenever one of these outboxes may have new rows."""
        event = asyncio.Event()
        for schema in schemas:
            if schema not in self._waiters:
                self._unheard.add(schema)
                self._kick.set()  # listened to from the next turn of ``_serve``
            self._waiters[schema].add(event)
        return event

    async def wait(self, event: asyncio.Event, poll_seconds: float) -> None:
        """Sleeps until ``event`` is set, or the poll interval when not listening."""
        timeout = self.fallback_seconds if self.listening else poll_seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()

    def _deliver(self, _connection: object, _pid: int, name: str, payload: str) -> None:
        watched = self._watched.get(name)
        if watched is not None:
            watched[0](payload)
            return
        for event in self._waiters.get(name.removeprefix(PREFIX), ()):
            event.set()

    async def run(self) -> None:
        """Keeps the listening connection up and sends the coalesced notifications."""
        backoff = 0.5
        while True:
            try:
                await self._serve()
            except Exception as exc:
                logger.warning("notifications unavailable (%s); readers poll meanwhile",
                               type(exc).__name__)
            finally:
                self.listening = False
                for _, hearing in self._watched.values():
                    hearing(False)
                await self._close()
            for events in self._waiters.values():  # anything may have been missed
                for event in events:
                    event.set()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _serve(self) -> None:
        self._connection = connection = await asyncpg.connect(self.dsn, timeout=5)
        self._unheard = set(self._waiters)
        for name, (_, hearing) in self._watched.items():
            await connection.add_listener(name, self._deliver)
            hearing(True)
        while True:
            unheard, self._unheard = self._unheard, set()
            for schema in sorted(unheard):
                await connection.add_listener(channel(schema), self._deliver)
                # A commit announced before this LISTEN took effect was not heard, and a reader
                # may have looked before that commit and gone to sleep for the fallback's time:
                # each looks once more now.
                for event in self._waiters.get(schema, ()):
                    event.set()
            self.listening = True
            await self._kick.wait()
            self._kick.clear()
            pending, self._pending = self._pending, set()
            unsent = sorted(pending)
            try:
                while unsent:
                    await connection.execute("SELECT pg_notify($1, '')", channel(unsent[0]))
                    unsent.pop(0)
                    self.notified += 1
            except BaseException:
                # Sent by the next connection instead: the other processes' readers would
                # otherwise sleep until their fallback poll.
                self._pending.update(unsent)
                self._kick.set()
                raise
            # The commits of the next moment gather into one notification. A notification is a
            # transaction of its own, and PostgreSQL wakes every listening connection of the
            # database for it (each process of each service has one): under a steady stream of
            # commits, one per commit would cost more than the commits. Readers lose nothing
            # by it: one that is busy reads again by itself (the relay after
            # ``RELAY_LINGER_SECONDS``, no shorter), and the first commit after a quiet spell
            # is announced at once.
            await asyncio.sleep(GATHER_SECONDS)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
