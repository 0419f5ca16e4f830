"""Every error under ``/open311/v2/`` as the specification's error list, whoever answered it.

The endpoints answer their own errors as lists. Some answers come before any endpoint runs: the
common guards (a body too large or not a form, NUL in a parameter, a body that did not arrive),
an unknown path (404) or method (405). Those are problem JSON; an Open311 client reads neither,
so they are rewritten here into the list, in XML when the path ends ``.xml``, keeping the
status and the headers that matter (``Allow``, ``Retry-After``).

What the HTTP server refuses before the app runs never passes here: admission's 503, the
whole-request 408 and the parser's 400 are rendered as the list by ``services/httpserver.py``
itself once the request's path is known (``docs/open311.md`` says which stay problem JSON).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from intake_api.open311.formats import Open311Error, render_error
from shared.middleware import CONTENT_CODING_SLUG
from shared.open311 import PREFIX, format_of
from shared.problems import PROBLEM_JSON, STATUSES, TYPE_BASE, UNLISTED

_PROBLEM = PROBLEM_JSON.encode()
# Open311 lists invalid fields as 400 (the endpoints answer their own so).
_STATUSES = {422: 400}
# Said as an Open311 client needs to hear it: the guards' own words speak of JSON.
_DESCRIPTIONS = {415: "send the request as application/x-www-form-urlencoded (or "
                      "multipart/form-data)"}
# Problems whose own words already suit an Open311 client.
_OWN_WORDS = frozenset({TYPE_BASE + CONTENT_CODING_SLUG})
_DROPPED_HEADERS = frozenset({b"content-type", b"content-length"})


def _error(status: int, problem: bytes) -> Open311Error:
    try:
        found = json.loads(problem)
        detail, kind = found.get("detail"), found.get("type")
    except (ValueError, AttributeError):
        detail = kind = None  # a HEAD answer carries no body
    description = None if kind in _OWN_WORDS else _DESCRIPTIONS.get(status)
    if description is None:
        description = detail if isinstance(detail, str) else STATUSES.get(status, UNLISTED).title
    return Open311Error(_STATUSES.get(status, status), description)


class Open311Errors:
    """Rewrites problem JSON answered under ``/open311/`` into the Open311 error list."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        fmt = format_of(scope["path"])
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and start is None and any(
                    name == b"content-type" and value.startswith(_PROBLEM)
                    for name, value in message.get("headers", ())):
                start = message  # held until the whole problem is read
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = int(start["status"])
            answer = render_error(fmt, _error(status, b"".join(chunks)))
            kept = [(name, value) for name, value in start.get("headers", ())
                    if name.lower() not in _DROPPED_HEADERS]
            body = b"" if scope["method"] == "HEAD" else answer.body
            await send({"type": "http.response.start", "status": answer.status_code,
                        "headers": [*answer.raw_headers, *kept]})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, rewrite)
