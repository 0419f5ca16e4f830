"""ASGI guards in front of every service: body size, content type, NUL characters, text that is
not Unicode."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import Problem, invalid
from shared.text import first_unencodable

MAX_BODY_BYTES = 256 * 1024
# Paths where browsers post HTML forms (the complainant's status page works without JavaScript).
FORM_PATHS = frozenset({"/public/status", "/status"})
# Open311 GeoReport v2 clients post forms, never JSON (bounded like every other body).
FORM_PREFIXES = ("/open311/",)
FORM_TYPES = frozenset({b"application/x-www-form-urlencoded", b"multipart/form-data"})
# A body that stops arriving (a stalled client, a connection caught in a shutdown) is refused
# cleanly before the server's own graceful-shutdown timeout would cancel it with a bare 500.
BODY_TIMEOUT_SECONDS = 10.0
# Evidence uploads: the endpoint reads its multipart body itself, as it streams, under its own
# limit (10 MiB), so it is passed through unread.
STREAMED_BODIES = re.compile(r"^/v1/complaints/[^/]+/attachments/?$")
CONTENT_CODING_SLUG = "unsupported-content-coding"
# Paths whose query parameters are all singular (no list parameter among them).
SINGULAR_PREFIXES = ("/v1/", "/dashboard")


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return (b"%00" in query or b"\x00" in query or "\x00" in scope.get("path", "")
            or any(b"\x00" in value for _, value in scope.get("headers", ())))


def _repeated_parameter(scope: Scope) -> str | None:
    """The first query parameter given twice under ``/v1/``, where every parameter is singular:
    the framework would silently take the last (``period=2022-Q1&period=2023``), answering a
    question the caller may not have meant. Open311's own parameters are left to it."""
    query: bytes = scope.get("query_string", b"")
    if b"&" not in query or not scope.get("path", "").startswith(SINGULAR_PREFIXES):
        return None
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name[:64]
        seen.add(name)
    return None


def _content_coding(scope: Scope) -> str | None:
    """The body's content coding when it is not ``identity`` (every ``Content-Encoding``
    header, each a comma-separated list, RFC 9110 §8.4); None for a plain body."""
    for name, value in scope.get("headers", ()):
        if name.lower() != b"content-encoding":
            continue
        codings = [c.strip().lower() for c in bytes(value).decode("latin-1").split(",")]
        unsupported = [c for c in codings if c and c != "identity"]
        if unsupported:
            return ", ".join(unsupported)[:40]
    return None


def unsupported_coding(coding: str) -> Problem:
    """415 for a compressed (or otherwise coded) body (RFC 9110 §15.5.16): no service decodes
    one, so it would be read as garbage or, worse, as the plain text it claims not to be.
    ``Accept-Encoding`` says which codings a body may have."""
    return Problem(415, f"Content-Encoding {coding!r} is not accepted: send the body "
                        "uncompressed (identity).", slug=CONTENT_CODING_SLUG,
                   title="Unsupported content coding",
                   headers={"Accept-Encoding": "identity"})


class _NotJsonNumber(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotJsonNumber(name)


def _refused_json(body: bytes) -> Problem | None:
    """What the app's parser would let through a JSON body, read once, before it: ``NaN`` or
    ``Infinity`` as a value (RFC 8259 has no such numbers; Python reads them, and the body
    would reach validation as a number, a 422 about one field, instead of the malformed JSON it
    is), and a lone UTF-16 surrogate (``"\\ud800"``: no Unicode text, so it could be neither
    stored, logged nor sent back). Other malformed JSON is the app's 400."""
    if b"\\u" not in body and b"NaN" not in body and b"Infinity" not in body:
        return None  # none of them can be written otherwise in UTF-8 JSON
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except _NotJsonNumber as exc:
        return Problem(400, f"The request body is not valid JSON: {exc} is no JSON number.")
    except (ValueError, RecursionError):  # also nested deeper than the parser recurses
        return None
    pointer = first_unencodable(document)
    if pointer is None:
        return None
    reason = "a lone UTF-16 surrogate is not Unicode text"
    return invalid(pointer, reason, detail=f"{pointer}: {reason}")


class BodyGuard:
    """413 for bodies over 256 KiB, 415 for bodies that are not JSON or that come compressed,
    before any parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ASGIApp:
        return Problem(413, f"The body may be at most {self.max_bytes} bytes.").response()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_nul(scope):
            # PostgreSQL text cannot hold NUL: refuse it here, for every parameter at once.
            await Problem(422, "Parameters and headers must not contain NUL characters."
                          ).response()(scope, receive, send)
            return
        repeated = _repeated_parameter(scope) if scope["type"] == "http" else None
        if repeated is not None:
            await invalid(f"/query/{repeated}", "given more than once; each parameter is "
                          "singular", detail=f"The query parameter {repeated!r} was given "
                          "more than once; give it once.").response()(scope, receive, send)
            return
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        coding = _content_coding(scope)
        if coding is not None:
            await unsupported_coding(coding).response()(scope, receive, send)
            return
        if STREAMED_BODIES.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        path = scope.get("path", "")
        is_json = ((content_type == b"application/json" or content_type.endswith(b"+json"))
                   and not path.startswith(FORM_PREFIXES))
        is_form = content_type in FORM_TYPES and (path in FORM_PATHS
                                                  or path.startswith(FORM_PREFIXES))
        if not is_json and not is_form and (length not in (None, b"0") or content_type):
            forms = path in FORM_PATHS or path.startswith(FORM_PREFIXES)
            await Problem(415, "Send the body as application/json or a form "
                               "(application/x-www-form-urlencoded)." if forms else
                          "Send the body as application/json.").response()(scope, receive, send)
            return
        # Read the whole (bounded) body first, so an oversized one is refused before parsing.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                    message = await receive()
            except TimeoutError:
                await Problem(408, "The request body did not arrive in time; send it again."
                              ).response()(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if is_json and b"\x00" in body:
            # No UTF-8 JSON holds a NUL byte (control characters are escaped in strings);
            # UTF-16 and UTF-32 text always does, and Python's parser would read it, past the
            # checks below that read the bytes as UTF-8.
            await Problem(400, "The request body is not valid JSON: send it as UTF-8 "
                               "(RFC 8259 §8.1).").response()(scope, receive, send)
            return
        refused = None if is_form else _refused_json(body)
        if refused is not None:
            await refused.response()(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
