"""Connections taken from the listening socket as soon as the event loop is free, all of them.

uvloop's libuv (1.45 on) accepts one connection per turn of the event loop, to be fair to other
processes on the same socket. A server whose loop is busy takes a turn of tens of milliseconds,
so it accepts a few dozen connections a second: offered more new connections than that (a burst,
or clients that open one per request under load), the others wait in the kernel's accept queue
for seconds, where admission cannot see them and nothing can refuse them. Measured at twice the
sustainable rate, that wait was most of the slowest answers, 201 and 503 alike, while the requests
already read were answered within their budget.

So the server also watches the listening socket itself and, each time it is readable, accepts up
to ``ACCEPT_BATCH`` connections, handed to the protocol like the loop's own. Two worker processes
on one socket both wake: the one free first takes them, a busy one fewer. Once accepted, a
connection's request is read and judged (admitted, or refused at once with 503) by the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import Callable

logger = logging.getLogger(__name__)

# Connections accepted per readiness: the whole queue of a burst, in practice, while a second
# worker on the same socket still gets its turn.
ACCEPT_BATCH = 64
# Out of file descriptors: the loop's own accept stays on; this one pauses as asyncio's does.
RETRY_SECONDS = 1.0
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class EagerAcceptor:
    """Accepts from ``listener`` (a duplicate of it, watched beside the server's own) and
    connects each connection to a protocol from ``protocol_factory``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: socket.socket,
                 protocol_factory: Callable[[], asyncio.Protocol],
                 tls: ssl.SSLContext | None = None) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._tls = tls  # as the server's own listener has it, or a TLS client would read HTTP
        self._socket = socket.socket(fileno=os.dup(listener.fileno()))
        self._socket.setblocking(False)
        # Each connection being handed to a protocol, and its socket: closed if the server
        # stops first, so a client is not left waiting on a socket nobody serves.
        self._connecting: dict[asyncio.Task[None], socket.socket] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._watch()

    def _watch(self) -> None:
        self._retry = None
        self._loop.add_reader(self._socket.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _ = self._socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # the queue is empty, or the server's own accept took the rest
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                logger.warning("accepting connections paused for %g s: %s", RETRY_SECONDS, exc)
                self._loop.remove_reader(self._socket.fileno())
                self._retry = self._loop.call_later(RETRY_SECONDS, self._watch)
                return
            task = self._loop.create_task(self._connect(connection))
            self._connecting[task] = connection
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[None]) -> None:
        self._connecting.pop(task, None)

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection, ssl=self._tls)
        except (OSError, ssl.SSLError):  # the client left, or failed its handshake
            connection.close()

    def close(self) -> None:
        """Stops accepting (the server closes its listener alongside)."""
        if self._retry is not None:
            self._retry.cancel()
        elif self._socket.fileno() != -1:
            self._loop.remove_reader(self._socket.fileno())
        for task, connection in list(self._connecting.items()):
            task.cancel()
            connection.close()
        self._connecting.clear()
        with contextlib.suppress(OSError):
            self._socket.close()
