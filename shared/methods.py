"""HEAD wherever GET is, and an ``Allow`` header that names every method of the path.

RFC 9110 (9.3.2) asks a server to answer HEAD as it answers GET, without the content; FastAPI
routes GET alone. A HEAD is therefore passed on as a GET and its answer sent without the body
(the status and headers, ``Content-Length`` included, stay those of the GET).

Starlette answers 405 with the methods of the first route whose path matched, though a path may
have several routes (``GET`` and ``POST /v1/complaints``): the 405's ``Allow`` is made the
union of them all, with ``HEAD`` wherever ``GET`` is (RFC 9110, 15.5.6).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Mount, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The order RFC 9110 lists them in, so that Allow reads the same every time.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(router: Router, scope: Scope) -> list[str]:
    """Every method some route of ``router`` answers at the scope's path.

    Each method is tried against the routes as they match a request (included routers and all),
    rather than read from their attributes; it runs only for a 405.
    """
    allowed = [method for method in METHOD_ORDER if method != "HEAD" and any(
        _answers(route, {**scope, "method": method}) for route in router.routes)]
    if "GET" in allowed:
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return allowed


def _answers(route: BaseRoute, scope: Scope) -> bool:
    if isinstance(route, Mount):
        # A mount matches its path whatever the method; of what is mounted here, the static
        # files (the API pages' assets) answer GET alone.
        return (scope["method"] == "GET" and isinstance(route.app, StaticFiles)
                and route.matches(scope)[0] is Match.FULL)
    return route.matches(scope)[0] is Match.FULL


class HeadAsGet:
    """HEAD answered as GET without the body; every 405 told the path's methods."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        routed = {**scope, "method": "GET"} if head else scope
        # The router writes into the scope it routes (a mount's root path, for one), and the
        # methods of the path are those of the request as it came: only the root path matters
        # to matching, so only it is kept, not a copy of the scope on every request.
        root_path = routed.get("root_path", "")

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                as_came = {**routed, "root_path": root_path}
                allow = ", ".join(allowed_methods(self.router, as_came)).encode()
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow)]}
            elif head and message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the content of a HEAD answer is never sent
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(routed, receive, answer)
        finally:
            if "route" in routed:  # for the access log, which reads the request's own scope
                scope["route"] = routed["route"]
