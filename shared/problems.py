"""RFC 9457 problem details: every error any service answers is one of these."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db import CommitUnanswered

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://aduan.ombudsman.go.id/problems/"



@dataclass(frozen=True)
class Status:
    """One status this API answers with: the problem's title and type, and what it means here
    (the description every operation's OpenAPI entry carries unless it says more)."""

    title: str
    slug: str
    meaning: str


# The one catalogue of error statuses: problem bodies, the ASGI guards and OpenAPI read it.
STATUSES: dict[int, Status] = {
    400: Status("Malformed request", "malformed-request", "Malformed JSON"),
    401: Status("Not authenticated", "unauthenticated", "Missing, unknown or revoked token"),
    403: Status("Forbidden", "forbidden", "The caller's role may not do this"),
    404: Status("Not found", "not-found", "Not found, or outside the caller's scope"),
    405: Status("Method not allowed", "method-not-allowed", "Method not allowed"),
    408: Status("Request timeout", "request-timeout", "The body did not arrive in time"),
    409: Status("Conflict", "conflict", "In conflict with the current state"),
    412: Status("Precondition failed", "precondition-failed",
                "If-Match does not match the current version"),
    413: Status("Request body too large", "payload-too-large", "Body over 256 KiB"),
    415: Status("Unsupported media type", "unsupported-media-type",
                "Body is not JSON, or is compressed (any `Content-Encoding` but `identity`; "
                "`Accept-Encoding` says so)"),
    422: Status("Invalid request", "validation-error", "Invalid field (each named in `errors`)"),
    429: Status("Too many requests", "rate-limited", "Over the rate limit (see `Retry-After`)"),
    431: Status("Request header fields too large", "headers-too-large",
                "The request's head is over 16 KiB"),
    500: Status("Internal error", "internal-error", "An unexpected error"),
    503: Status("Service unavailable", "unavailable",
                "At capacity, or a backing service is unavailable (see `Retry-After`)"),
}
UNLISTED = Status("Error", "error", "Error")


def documented(*statuses: int, saying: Mapping[int, str] | None = None,
               ) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for these statuses: the catalogue's meaning unless ``saying``
    tells what the status means for this operation."""
    said = saying or {}
    return {status: {"description": said.get(status, STATUSES.get(status, UNLISTED).meaning),
                     "content": {PROBLEM_JSON: {}}} for status in (*statuses, *said)}


# asyncpg's names for "the server is gone or going": shutdown, restart, lost socket.
CONNECTION_LOSS = {
    "ConnectionDoesNotExistError", "PostgresConnectionError", "AdminShutdownError",
    "CannotConnectNowError", "CrashShutdownError", "ConnectionFailureError",
    "InterfaceError", "ConnectionResetError", "BrokenPipeError", "OSError",
}


# SQLSTATEs of a transaction that lost a race, not of a wrong statement: deadlock_detected and
# serialization_failure. Tried again it succeeds, so clients hear 503 and consumers retry.
TRANSIENT_CONFLICTS = {"40P01", "40001"}

# query_canceled: a request's statement ran out of ``statement_timeout`` (shared/db.py), or an
# administrator cancelled it; its transaction did not commit, so the request may be retried.
QUERY_CANCELED = "57014"


class Problem(Exception):
    """A domain error that knows its HTTP status; one handler renders them all."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        known = STATUSES.get(status, UNLISTED)
        self.title = title or known.title
        self.slug = slug or known.slug
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> JSONResponse:
        """The problem as a response; being an ASGI app, ASGI middleware can send it too."""
        return JSONResponse(self.body(), status_code=self.status, media_type=PROBLEM_JSON,
                            headers=self.headers)


def overloaded(detail: str, *, retry_after: int) -> Problem:
    """A 503 that says the service is saturated, not that a backing service is down."""
    return Problem(503, detail, slug="overloaded", title="Service overloaded",
                   headers={"Retry-After": str(retry_after)})


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} not found")


def parse_id(value: str, what: str) -> uuid.UUID:
    """An id from a path: one that cannot exist is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(what) from None


def invalid(field: str, message: str, *, detail: str | None = None) -> Problem:
    """A 422 naming the field (a JSON pointer) in ``errors``."""
    return Problem(422, detail or message, errors=[{"field": field, "message": message}])


def json_pointer(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        source, parts = parts[0], parts[1:]
        if source != "body":
            return f"/{source}/" + "/".join(parts) if parts else f"/{source}"
    escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped)


def validation_message(error: Mapping[str, Any]) -> str:
    """What a pydantic error says of one field, in words a client reads. Text constrained after
    a validator (``StoredText``) is measured as a sequence: pydantic speaks of its "items"."""
    kind, value, ctx = error.get("type"), error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("too_long", "too_short") and isinstance(value, str):
        bound = "most" if kind == "too_long" else "least"
        limit = ctx.get("max_length" if kind == "too_long" else "min_length")
        return f"must have at {bound} {limit} characters, not {len(value)}"
    return str(error.get("msg", "invalid"))


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return Problem(400, "The request body is not valid JSON.")
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        # An empty body is no JSON document at all (API.md: 400 for malformed JSON); FastAPI
        # reports a body of JSON ``null`` the same way, and that is no object either.
        return Problem(400, "The request body is empty or null: send a JSON object.")
    items = []
    for error in errors:
        items.append({"field": json_pointer(error.get("loc", ())),
                      "message": validation_message(error)})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in items[:5]) or "invalid request"
    return Problem(422, detail, errors=items)


def is_connection_loss(exc: DBAPIError) -> bool:
    """True when the error says the server went away, not that the statement was wrong."""
    if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
        return True
    cause: BaseException | None = exc.orig
    while cause is not None:  # the driver's own exception sits behind the adapter's
        if {c.__name__ for c in type(cause).__mro__} & CONNECTION_LOSS:
            return True
        cause = cause.__cause__
    return False


def is_transient_conflict(exc: DBAPIError) -> bool:
    """True when the transaction lost a race with another (a deadlock, a serialization
    failure): SQLAlchemy's asyncpg adapter reports those as a plain DBAPIError."""
    cause: BaseException | None = exc.orig
    while cause is not None:
        if getattr(cause, "sqlstate", None) in TRANSIENT_CONFLICTS:
            return True
        cause = cause.__cause__
    return False


def is_given_up(exc: BaseException) -> bool:
    """True when the database did not answer in time: the driver gave up waiting (a
    ``TimeoutError``, the server stalled) or the server cancelled a statement that ran too
    long (``QUERY_CANCELED``)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TimeoutError) or getattr(cause, "sqlstate", None) == QUERY_CANCELED:
            return True
        cause = cause.orig if isinstance(cause, DBAPIError) else cause.__cause__
    return False


def database_too_slow() -> Problem:
    """The answer to a request the database did not answer in time; nothing it wrote was
    committed."""
    return Problem(503, "The database did not answer in time; retry shortly.",
                   headers={"Retry-After": "5"})


# What a client that was told ``outcome_unknown`` does about a complaint it posted.
# Posted without an Idempotency-Key (the only posts the group commit writes), a complaint has
# no key a retry could name: a key given now is a new one, and records it again if it was.
COMPLAINT_RETRY_ADVICE = (
    "Post it again with the same external_reference (a 409 then names the complaint if it was "
    "recorded), or look for it with GET /v1/complaints before posting it again; an "
    "Idempotency-Key on a first post makes such a retry safe.")


def outcome_unknown(what: str, advice: str = COMPLAINT_RETRY_ADVICE) -> Problem:
    """The database stopped answering while it committed ``what``: recorded or not, nobody
    could tell in time. A retry that names the same write (the ``Idempotency-Key`` it was
    sent with, or its ``external_reference``) is answered without recording it twice."""
    return Problem(
        503, f"The database stopped answering while {what} was being committed: whether it was "
             f"recorded is unknown. {advice}",
        slug="outcome-unknown", title="Outcome unknown", headers={"Retry-After": "5"})


def database_problem(exc: DBAPIError) -> Problem:
    """What a client hears of a database error: retry shortly when the database is gone or
    the transaction lost a race, an internal error otherwise."""
    if is_given_up(exc):
        logger.warning("database did not answer in time: %s", type(exc.orig).__name__)
        return database_too_slow()
    if is_connection_loss(exc):
        logger.warning("database unavailable: %s", type(exc.orig).__name__)
        return Problem(503, "The database is unavailable; retry shortly.",
                       headers={"Retry-After": "5"})
    if is_transient_conflict(exc):
        logger.warning("transaction conflict: %s", type(exc.orig).__name__)
        return Problem(503, "The request conflicted with a concurrent one; retry it.",
                       headers={"Retry-After": "1"})
    logger.error("database error: %s", type(exc.orig).__name__, exc_info=exc)
    return Problem(500, "An unexpected error occurred.")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return Problem(exc.status_code, detail, headers=dict(exc.headers or {})).response()

    @app.exception_handler(DBAPIError)
    async def _database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        return database_problem(exc).response()

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(_: Request, exc: PoolTimeout) -> JSONResponse:
        logger.warning("no database connection free in time")
        return overloaded("The service is at capacity; retry shortly.", retry_after=1).response()

    @app.exception_handler(CommitUnanswered)
    async def _commit_unanswered(_: Request, exc: CommitUnanswered) -> JSONResponse:
        logger.warning("a commit went unanswered: its outcome is unknown")
        return outcome_unknown("this request's changes",
                               "Check with a GET before sending it again; a request sent with "
                               "an Idempotency-Key is sent again with the same key, which "
                               "answers it as it was if it was recorded.").response()

    @app.exception_handler(OSError)
    @app.exception_handler(TimeoutError)
    async def _connection_lost(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("backing service unreachable: %s", type(exc).__name__)
        return Problem(503, "A backing service is unavailable; retry shortly.",
                       headers={"Retry-After": "5"}).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return Problem(500, "An unexpected error occurred.").response()
