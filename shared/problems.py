"""RFC 9457 problem details: every error any service answers is one of these."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://aduan.ombudsman.go.id/problems/"

TITLES = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}

SLUGS = {
    400: "malformed-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


# asyncpg's names for "the server is gone or going": shutdown, restart, lost socket.
CONNECTION_LOSS = {
    "ConnectionDoesNotExistError", "PostgresConnectionError", "AdminShutdownError",
    "CannotConnectNowError", "CrashShutdownError", "ConnectionFailureError",
    "InterfaceError", "ConnectionResetError", "BrokenPipeError", "OSError",
}


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
        self.title = title or TITLES.get(status, "Error")
        self.slug = slug or SLUGS.get(status, "error")
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


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.body(),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} not found")


def parse_id(value: str, what: str) -> uuid.UUID:
    """An id from a path: one that cannot exist is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(what) from None


def invalid(field: str, message: str) -> Problem:
    return Problem(422, message, errors=[{"field": field, "message": message}])


def json_pointer(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        source, parts = parts[0], parts[1:]
        if source != "body":
            return f"/{source}/" + "/".join(parts) if parts else f"/{source}"
    escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped)


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return Problem(400, "The request body is not valid JSON.")
    items = []
    for error in errors:
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        items.append({"field": json_pointer(error.get("loc", ())), "message": message})
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


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return problem_response(Problem(exc.status_code, detail, headers=dict(exc.headers or {})))

    @app.exception_handler(DBAPIError)
    async def _database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if not is_connection_loss(exc):
            logger.error("database error: %s", type(exc.orig).__name__, exc_info=exc)
            return problem_response(Problem(500, "An unexpected error occurred."))
        logger.warning("database unavailable: %s", type(exc.orig).__name__)
        return problem_response(
            Problem(503, "The database is unavailable; retry shortly.",
                    headers={"Retry-After": "5"})
        )

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(_: Request, exc: PoolTimeout) -> JSONResponse:
        logger.warning("no database connection free in time")
        return problem_response(
            Problem(503, "The service is at capacity; retry shortly.", slug="overloaded",
                    title="Service overloaded", headers={"Retry-After": "1"})
        )

    @app.exception_handler(OSError)
    @app.exception_handler(TimeoutError)
    async def _connection_lost(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("backing service unreachable: %s", type(exc).__name__)
        return problem_response(
            Problem(503, "A backing service is unavailable; retry shortly.",
                    headers={"Retry-After": "5"})
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return problem_response(Problem(500, "An unexpected error occurred."))
