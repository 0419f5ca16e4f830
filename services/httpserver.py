"""The HTTP server in front of the apps: uvicorn, with limits a hostile client cannot get around.

uvicorn picks the httptools parser when it is installed, and that parser bounds nothing: a
100 MiB header is gathered by repeated concatenation while every other request waits (13 s on
these machines), and a client dribbling one byte every few seconds holds its connection forever.
h11 bounds the head but answers 400 instead of 431 and is slower per request. So the httptools
protocol is kept and guarded here, per connection:

- the request line and headers together may take at most ``MAX_HEAD_BYTES``: 431 beyond;
- a request must arrive whole, head and body, within the deadline counted from its first byte
  (from the connection itself for the first request): 408 and disconnection beyond;
- one client address may hold a bounded number of open connections: 429 beyond;
- a request the parser cannot read (a garbage request line, raw non-ASCII in the target, a bad
  ``Content-Length``) is answered 400 as problem JSON, not uvicorn's plain text;
- a request that admission (shared/admission.py) would refuse is answered 503 with
  ``Retry-After`` here, before a task or any middleware runs, and the connection is kept: under
  overload a refusal costs little, and the processor stays with the requests admitted.

The responses are problem JSON written straight to the socket: the request never reached an app.
Under ``/open311/`` they are the Open311 error list instead (XML when the path ends ``.xml``,
the path percent-decoded as the app is given it) once the request's head has been read, and
for a head over the bound (431) whose request line was read whole; before that (a refused
request line, a deadline passed within the head) the path is not known, and neither is it when
a connection over the bound per address is refused before it sends anything (429).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar, cast

import httptools
import uvicorn
from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services import heap
from services.acceptor import EagerAcceptor
from shared.access_log import SERVER_ANSWER
from shared.admission import ARRIVED, AT_CAPACITY, EXEMPT_PATHS, GATE, Gate
from shared.open311 import MEDIA_TYPES, PREFIX, Format, error_list, format_of
from shared.problems import PROBLEM_JSON, Problem, overloaded
from shared.settings import Settings

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # API.md: "Request headers over 16 KiB: 431"
# More than a request line holds besides its target: the longest method llhttp knows
# (``UNSUBSCRIBE``), the spaces, ``HTTP/1.1`` and the line's end.
_REQUEST_LINE_REST = 32
# uvicorn's own setting: the proxies whose ``X-Forwarded-For`` and ``-Proto`` are believed.
FORWARDED_ALLOW_IPS = "FORWARDED_ALLOW_IPS"

# The status line's reason phrases; the problem body takes its title from the catalogue.
_REASONS = {400: "Bad Request", 408: "Request Timeout", 429: "Too Many Requests",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def app_path(target: bytes) -> str | None:
    """The path the app is given for a request target (``scope["path"]``), decoded as uvicorn's
    httptools protocol decodes it: ``/open311/v2/requests%2Exml`` is ``requests.xml`` to the
    app's routing, and so to the format of a refusal made here. None for a target the parser
    would refuse (the app never sees it)."""
    try:
        path = httptools.parse_url(target).path.decode("ascii")
    except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
        return None
    return urllib.parse.unquote(path) if "%" in path else path


@dataclass(frozen=True)
class Limits:
    max_head_bytes: int = MAX_HEAD_BYTES
    request_deadline: float = 30.0
    max_connections_per_client: int = 100  # 0: no bound (a reverse proxy bounds them)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(request_deadline=settings.request_deadline_seconds,
                   max_connections_per_client=settings.max_connections_per_client)


def refusal(status: int, detail: str, *, retry_after: int | None = None,
            open311: Format | None = None) -> bytes:
    """A whole HTTP/1.1 response carrying a problem, ending the connection; the Open311 error
    list instead when ``open311`` says in which format (the request is under ``/open311/``)."""
    if open311 is not None:
        head, body = _open311_response(status, detail, open311, retry_after=retry_after,
                                       keep_alive=False)
        return head + b"\r\n" + body
    # Too many connections is not the per-token rate limit: its own type says so.
    slug = "too-many-connections" if status == 429 else None
    head, body = _problem_response(Problem(status, detail, slug=slug), retry_after=retry_after,
                                   keep_alive=False)
    return head + b"\r\n" + body


def _problem_response(problem: Problem, *, retry_after: int | None,
                      keep_alive: bool) -> tuple[bytes, bytes]:
    """A problem's response head (without the blank line that ends it) and body."""
    body = json.dumps(problem.body()).encode()
    return _head(problem.status, PROBLEM_JSON, len(body), retry_after=retry_after,
                 keep_alive=keep_alive), body


def _open311_response(status: int, description: str, fmt: Format, *, retry_after: int | None,
                      keep_alive: bool) -> tuple[bytes, bytes]:
    """The same refusal as Open311's error list (INTEGRATIONS.md), in the request's format."""
    body = error_list(fmt, status, description)
    return _head(status, MEDIA_TYPES[fmt], len(body), retry_after=retry_after,
                 keep_alive=keep_alive), body


def _head(status: int, content_type: str, length: int, *, retry_after: int | None,
          keep_alive: bool) -> bytes:
    head = [f"HTTP/1.1 {status} {_REASONS[status]}",
            f"content-type: {content_type}", f"content-length: {length}"]
    if not keep_alive:
        head.append("connection: close")
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return "".join(line + "\r\n" for line in head).encode()


@functools.cache
def _overloaded(retry_after: int, keep_alive: bool,
                open311: Format | None = None) -> tuple[bytes, bytes]:
    if open311 is not None:
        return _open311_response(503, AT_CAPACITY, open311, retry_after=retry_after,
                                 keep_alive=keep_alive)
    return _problem_response(overloaded(AT_CAPACITY, retry_after=retry_after),
                             retry_after=retry_after, keep_alive=keep_alive)


def _peer_host(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None  # a Unix socket: one trusted local peer, not bounded


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head, a request deadline, a bound on
    connections per client address and admission's refusals answered before the app (see the
    module's docstring)."""

    limits: ClassVar[Limits] = Limits()
    open_per_client: ClassVar[Counter[str]] = Counter()
    gate: ClassVar[Gate] = Gate()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host: str | None = None
        self._refused = False
        self._reading_head = True
        self._head_bytes = 0
        self._in_message = False  # between a message's first byte and its end
        # Blank lines before a request line: the parser skips them, the bound counts them.
        self._blank_before = 0
        self._deadline: asyncio.TimerHandle | None = None
        # The request being read is refused without reaching the app: its body is dropped.
        self._shedding = False
        self._shed_keep_alive = True

    # Connections per client address
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        host = _peer_host(transport)
        bound = self.limits.max_connections_per_client
        if host is not None and bound and self.open_per_client[host] >= bound:
            self._refused = True
            logger.warning("connection refused: %s already holds %d connections", host, bound)
            transport.write(refusal(
                429, f"At most {bound} connections per client address are open at once.",
                retry_after=1))
            transport.close()
            return
        if host is not None:
            self.open_per_client[host] += 1
            self._host = host
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        if self._host is not None:
            self.open_per_client[self._host] -= 1
            if self.open_per_client[self._host] <= 0:
                del self.open_per_client[self._host]
            self._host = None
        super().connection_lost(exc)

    # The head's size
    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if not self._reading_head:
            super().data_received(data)
            return
        room = self.limits.max_head_bytes - self._head_bytes
        if not self._in_message:
            self._blank_before += len(data) - len(data.lstrip(b"\r\n"))
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed exactly up to the bound: either the head ends within it, or the request is refused
        # before a single byte more is buffered.
        self._head_bytes += room
        super().data_received(data[:room])
        if self._reading_head:
            self._refuse(431, f"The request line and headers may take at most "
                              f"{self.limits.max_head_bytes} bytes.",
                         target_read=self._target_read_whole())
            return
        self.data_received(data[room:])

    def on_message_begin(self) -> None:
        # A request following a refusal in the same read: the keep-alive wait is over.
        self._unset_keepalive_if_required()
        super().on_message_begin()
        self._in_message = True
        # When the request's first byte was read: admission counts a request's wait from here,
        # the time it spent behind others in the event loop included.
        self.scope[ARRIVED] = self.loop.time()  # type: ignore[literal-required]
        self.scope[GATE] = self.gate  # type: ignore[literal-required]
        self._arm()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        # A request read after its connection began to close (pipelined behind one that asked
        # to close) is dropped unanswered, as uvicorn drops it: it must not reach the app.
        if self.transport.is_closing() or self._refused_by_admission():
            self._shedding = True
            self._shed_keep_alive = (self.parser.get_http_version() != "1.0"
                                     and self.parser.should_keep_alive())
            self.scope["method"] = self.parser.get_method().decode("ascii")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._shedding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._shedding:
            self._shedding = False
            self._answer_overloaded()
        else:
            super().on_message_complete()
        self._disarm()
        self._in_message = False
        self._reading_head = True
        self._head_bytes = 0
        self._blank_before = 0

    # Admission's refusals
    def _refused_by_admission(self) -> bool:
        """Whether admission would refuse this request, asked before the app sees it."""
        admission = self.gate.admission
        if admission is None or self.expect_100_continue:
            return False  # no request reached admission yet; or one waiting to be told to send
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # pipelined behind an answer still on its way: answers keep their order
        if not admission.full():
            return False
        if app_path(self.url) in EXEMPT_PATHS:
            return False  # decoded as admission reads it, which exempts /health%7A too
        admission.count_refusal()
        return True

    def _answer_overloaded(self) -> None:
        if self.transport.is_closing():
            return
        admission = self.gate.admission
        assert admission is not None
        head, body = _overloaded(admission.retry_after, self._shed_keep_alive,
                                 self._open311_format())
        # Logged and counted like any request (RUNNING.md's access log), its request id returned.
        counted = self.gate.answered_before_app
        extra = b""
        if counted is not None:
            arrived = self.scope.get(ARRIVED)
            request_id = counted(cast(Scope, self.scope), 503, self.loop.time() - arrived
                                 if isinstance(arrived, float) else 0.0)
            extra = b"x-request-id: " + request_id.encode() + b"\r\n"
        if self.scope["method"] == "HEAD":
            body = b""  # the head says the body's length; a HEAD answer carries none
        self.transport.write(b"".join([head, extra, *(name + b": " + value + b"\r\n"
                                                      for name, value
                                                      in self.server_state.default_headers),
                                       b"\r\n", body]))
        self.server_state.total_requests += 1
        if not self._shed_keep_alive:
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def _target_read_whole(self) -> bool:
        """Whether the target of a head cut off at the bound (431) was read whole. httptools
        hands the target over as far as it has read it, so one cut off by the bound ends where
        the bytes read end; one that ends well before them (room left for the method, the
        version and the line's end) was followed by more of the head: it is whole."""
        read = self._head_bytes - self._blank_before
        return self._in_message and len(self.url) + _REQUEST_LINE_REST < read

    def _open311_format(self, *, target_read: bool = False) -> Format | None:
        """The Open311 format a refusal of this request is answered in; None for problem JSON,
        and while the head is still arriving unless its target is known to have been read whole
        (``target_read``)."""
        if self._reading_head and not target_read:
            return None
        path = self.root_path + (app_path(self.url) or "")
        return format_of(path) if path.startswith(PREFIX) else None

    # The whole-request deadline
    def _arm(self) -> None:
        if self._deadline is None and self.limits.request_deadline > 0:
            self._deadline = self.loop.call_later(self.limits.request_deadline, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        self._refuse(408, f"The request did not arrive whole within "
                          f"{self.limits.request_deadline:g} seconds.")

    def _refuse(self, status: int, detail: str, *, target_read: bool = False) -> None:
        if self.transport.is_closing():
            return
        logger.warning("request refused (%d): %s", status, detail)
        cycle = self.cycle
        if cycle is None or self._shedding:
            answer = True
        elif self._reading_head:  # a response to the previous request may still be on its way
            answer = cycle.response_complete
        else:  # an app holds this request: only if it has not begun to answer
            answer = not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The app sees a disconnect, and whatever it still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            if cycle is not None and not self._reading_head and not self._shedding:
                # For the access log: the app holding the request sees only a disconnect.
                cycle.scope[SERVER_ANSWER] = status  # type: ignore[literal-required]
            self.transport.write(refusal(status, detail,
                                         open311=self._open311_format(target_read=target_read)))
        self.transport.close()

    # The parser's refusals
    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse (a garbage request line, raw non-ASCII in the
        target, a bad ``Content-Length`` or one beside ``Transfer-Encoding``), answered as
        problem JSON like every other error instead of uvicorn's plain text."""
        self._refuse(400, "The request is not valid HTTP/1.1: check the request line (characters "
                          "outside ASCII in the target must be percent-encoded as UTF-8), the "
                          "header syntax and Content-Length.")


def guarded_protocol(limits: Limits) -> type[GuardedHttpProtocol]:
    """A protocol class of its own for one server: its limits and its count of connections."""

    class Guarded(GuardedHttpProtocol):
        pass

    Guarded.limits = limits
    Guarded.open_per_client = Counter()
    Guarded.gate = Gate()
    return Guarded


def server_config(app: Any, *, host: str, port: int, settings: Settings,
                  **options: Any) -> uvicorn.Config:
    """How every aduan service is served (``aduan serve`` and the tests alike)."""
    options.setdefault("timeout_graceful_shutdown", 20)
    # uvicorn would take the client address from ``X-Forwarded-For`` sent from loopback by
    # default, and any program on the host (or a proxy passing the header through) writes what
    # it likes there: the per-address limits would count whatever it says. Only a proxy the
    # operator names (``FORWARDED_ALLOW_IPS``, docs/deployment.md) is believed.
    options.setdefault("proxy_headers", FORWARDED_ALLOW_IPS in os.environ)
    return uvicorn.Config(app, host=host, port=port, log_config=None,
                          http=guarded_protocol(Limits.from_settings(settings)), ws="none",
                          **options)


class Server(uvicorn.Server):
    """uvicorn's server, accepting connections as soon as its event loop is free
    (services/acceptor.py) and telling ``on_exit`` of a stop signal the moment it comes."""

    def __init__(self, config: uvicorn.Config,
                 on_exit: Callable[[int], None] | None = None, *,
                 settle_heap: bool = False) -> None:
        super().__init__(config)
        self.on_exit = on_exit
        # Whether start-up's objects are frozen out of the collector (services/heap.py): a
        # server process's own choice, not one for a server run inside another program.
        self.settle_heap = settle_heap
        self._acceptors: list[EagerAcceptor] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        config, loop = self.config, asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:  # as uvicorn makes them for its own listeners
            made: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state)
            return made

        self._acceptors = [EagerAcceptor(loop, listener, protocol, config.ssl)
                           for server in self.servers for listener in server.sockets]
        if self.settle_heap:
            heap.settle()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for acceptor in self._acceptors:
            acceptor.close()
        self._acceptors = []
        await super().shutdown(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.on_exit is not None:
            self.on_exit(sig)
        super().handle_exit(sig, frame)


def serve(app: Any, *, host: str, port: int, settings: Settings,
          sockets: list[socket.socket] | None = None,
          on_exit: Callable[[int], None] | None = None) -> None:
    """Runs the server until it is stopped (uvicorn's own signal handling)."""
    Server(server_config(app, host=host, port=port, settings=settings), on_exit,
           settle_heap=True).run(sockets=sockets)
