"""One log line and one set of request metrics per HTTP request, a request id, a trace hop.

The outermost ASGI layer, so it also sees answers the guards give before routing (413, 415, 422)
and those of unknown paths; the refusals the HTTP server answers itself, before any app runs
(services/httpserver.py), are logged and counted through the server's ``Gate``, their request
id returned. What it logs is chosen so no token or reporter's
data can appear: the route template (``/v1/complaints/{complaint_id}``), never the path; the
caller's token name, never the token; query parameters that carry credentials redacted.
"""

from __future__ import annotations

import logging
import os
import re
import time
from urllib.parse import parse_qsl, unquote_plus, urlencode

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import tracing
from shared.admission import GATE, Gate
from shared.auth import TOKEN_PREFIX

logger = logging.getLogger("aduan.access")

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is echoed back and logged: only a bounded, plain one is kept.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Open311 clients put a partner's token in ``api_key``.
# Credentials, and the complainant's access code (a secret of which only a hash is stored,
# INTEGRATIONS.md), which a link or a bookmark of the status page may carry in its query.
REDACTED_PARAMETERS = frozenset({"api_key", "token", "access_token", "access_code", "password"})
REDACTED_PARAMETER_PREFIXES = ("api_key", "api-key", "apikey", "token", "access_token",
                               "access_code", "access-code", "password")
UNMATCHED = "<unmatched>"
# The scope key where the HTTP server notes the status it answered a request with itself while
# an app held it (408 for a body too slow): the app then sees a disconnect and answers nothing.
SERVER_ANSWER = "aduan.server_answer"
_TRACE_HEADERS = frozenset(name.encode() for name in tracing.HEADERS)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("method", "route", "status")
        self.requests = Counter("aduan_http_requests", "HTTP requests answered",
                                labels, registry=registry)
        self.latency = Histogram("aduan_http_request_duration_seconds",
                                 "Time from the request's arrival to the end of the answer",
                                 labels, registry=registry, buckets=LATENCY_BUCKETS)
        # The series of each label set, found once: ``labels()`` locks and checks its values
        # on every call. As many as ``labels()`` itself keeps.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self._series.get((method, route, status))
        if series is None:
            series = self._series[method, route, status] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route, str(status)))
        series[0].inc()
        series[1].observe(seconds)


REDACTED = "REDACTED"
# Decoding stops here: a name percent-encoded deeper than this is redacted whole anyway.
_DECODINGS = 3


def _decoded(text: str) -> str:
    for _ in range(_DECODINGS):
        decoded = unquote_plus(text, encoding="latin-1")
        if decoded == text:
            break
        text = decoded
    return text


def _redacted_pair(name: str, value: str) -> tuple[str, str]:
    """The pair as logged: a credential's value hidden, and the name too where the name itself
    may hold one (``api_key%3D<token>`` is one name, ``api_key=<token>``, and no credential
    the app reads, yet it holds the token)."""
    folded = _decoded(name).strip().lower()
    if folded in REDACTED_PARAMETERS:
        return folded, REDACTED
    if ("=" in folded or "%" in folded or folded.startswith(REDACTED_PARAMETER_PREFIXES)
            or TOKEN_PREFIX in folded):
        return REDACTED, REDACTED
    if TOKEN_PREFIX in _decoded(value).lower():
        return name, REDACTED
    return name, value


def redacted_query(query: bytes) -> str:
    """The query string for a log line, without any credential a client put in it, however it
    spelled the name (percent-encoded, with ``=`` inside, upper case, with a suffix) and in
    whichever parameter it put a token."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return str(urlencode([_redacted_pair(k, v) for k, v in pairs], safe="/,:"))


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            text = bytes(value).decode("latin-1")
            if _SAFE_REQUEST_ID.fullmatch(text):
                return text
            break
    return new_request_id()


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits, the form ``uuid.uuid4().hex`` gives, for
    log tools that check it; without building a ``UUID`` object on every request."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant RFC 9562
    return raw.hex()


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    return path if isinstance(path, str) else UNMATCHED


def _caller(scope: Scope) -> str | None:
    actor = scope.get("state", {}).get("actor")
    name = getattr(actor, "name", None)
    return name if isinstance(name, str) else None


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gate = scope.get(GATE)
        if isinstance(gate, Gate):
            gate.answered_before_app = self.answered_before_app
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})  # shared with request.state, where auth puts the caller
        status = 500
        carrier = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope.get("headers", ()) if name in _TRACE_HEADERS}

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()),
                                      (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        with tracing.continued(carrier) as span:
            # bind/reset rather than ``bound_contextvars``, which reads every context variable.
            bound = structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                structlog.contextvars.reset_contextvars(**bound)
                self._record(scope, scope.get(SERVER_ANSWER, status),
                             time.perf_counter() - started, request_id,
                             tracing.trace_id_hex(span))

    def answered_before_app(self, scope: Scope, status: int, seconds: float) -> str:
        """Logs and counts an answer the HTTP server gave itself, before routing, like
        admission's own; returns the request id the answer carries."""
        request_id = _request_id(scope)
        self._record(scope, status, seconds, request_id, "")
        return request_id

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str,
                trace_id: str) -> None:
        route = _route_template(scope)
        method = str(scope["method"])
        self.metrics.answered(method, route, status, seconds)
        fields: dict[str, object] = {
            "method": method, "route": route, "status": status,
            "duration_ms": round(seconds * 1000, 1), "caller": _caller(scope),
            "request_id": request_id, "trace_id": trace_id,
        }
        query: bytes = scope.get("query_string", b"")
        if query:
            fields["query"] = redacted_query(query)
        logger.info("%s %s %d", method, route, status, extra=fields)
