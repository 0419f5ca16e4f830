"""The OpenAPI description: every error documented as RFC 9457 problem JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.problems import PROBLEM_JSON, STATUSES

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Validation errors, each naming a field by JSON pointer.",
            "items": {"type": "object", "required": ["field", "message"],
                      "properties": {"field": {"type": "string"},
                                     "message": {"type": "string"}}},
        },
        "allowed_actions": {"type": "array", "items": {"type": "string"}},
        "complaint_id": {"type": "string", "format": "uuid"},
    },
    "additionalProperties": True,
}
# Every /v1/ operation can answer these; those with a body and those with an id in their path,
# these too. The descriptions come from the one catalogue, ``shared.problems.STATUSES``.
COMMON = (401, 403, 422, 429, 503)
BODY = (400, 408, 413, 415)
WITH_ID = (404,)


@dataclass(frozen=True)
class Guide:
    """What the document teaches about one operation: prose, and a worked request and answer."""

    description: str
    response: Any  # an example of the success answer; None for one without a body
    request: Any = None  # an example body, for operations that take one
    status: str = "200"
    media: str = "application/json"


Guides = Mapping[str, Guide]  # keyed "METHOD /path", e.g. "GET /v1/metrics/summary"

BASE_GUIDES: dict[str, Guide] = {
    "GET /healthz": Guide("The process is alive. No token needed; for liveness probes.",
                          {"status": "ok"}),
    "GET /readyz": Guide(
        "The database and the event bus (Kafka, or the database's event log) are reachable: "
        "200 when both are, 503 problem JSON naming what is not. No token needed; for "
        "readiness probes and load balancers.",
        {"status": "ready", "checks": {"database": "ok", "event_bus": "ok (kafka)"}}),
    "GET /metrics": Guide(
        "Prometheus metrics in the text exposition format: requests by route and status with "
        "latency histograms, database pool use, outbox backlog and relay lag, consumer lag, "
        "dead letters. No token unless `ADUAN_METRICS_TOKEN` is set (then as a bearer).",
        "# TYPE aduan_http_requests_total counter\n"
        'aduan_http_requests_total{method="GET",route="/v1/metrics/summary",status="200"} 42\n',
        media="text/plain"),
    "GET /asyncapi.json": Guide(
        "The event contract as an AsyncAPI 3.0 document: the Kafka topics, the CloudEvents "
        "envelope and every event's data schema. No token needed.",
        {"asyncapi": "3.0.0", "info": {"title": "aduan events", "version": "1.0.0"},
         "channels": {"complaints": {"address": "aduan.complaints.v1"}}}),
}
AUTH_NOTE = ("\n\nSend the token as `Authorization: Bearer <token>`, or as the password of HTTP "
             "Basic (any user name) for spreadsheets and BI \"from web\" connectors.")


def _teach(schema: dict[str, Any], guides: Guides) -> None:
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            guide = guides.get(f"{method.upper()} {path}")
            if guide is None:
                continue
            given = operation.get("description", "")
            text = guide.description + (f"\n\n{given}" if given else "")
            if path.startswith("/v1/"):
                text += AUTH_NOTE
            operation["description"] = text
            if guide.request is not None and "requestBody" in operation:
                for content in operation["requestBody"].get("content", {}).values():
                    content["example"] = guide.request
            if guide.response is None:
                continue
            answer = operation.setdefault("responses", {}).setdefault(
                guide.status, {"description": "Success"})
            content = answer.setdefault("content", {})
            content.setdefault(guide.media, {})["example"] = guide.response


def install_openapi(app: FastAPI, guides: Guides | None = None) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes, tags=app.openapi_tags)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Problem"] = PROBLEM_SCHEMA
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                extra: tuple[int, ...] = ()
                if path.startswith("/v1/"):
                    extra += COMMON
                    if method in {"post", "put", "patch"}:
                        extra += BODY
                    if "{" in path:
                        extra += WITH_ID
                for code in extra:
                    responses.setdefault(str(code), {"description": STATUSES[code].meaning})
                for code, response in list(responses.items()):
                    # Open311 answers its errors as the standard's lists, not problem JSON;
                    # HTML pages (the complainant's status page) answer theirs as pages.
                    if (code[0] in "45" and not path.startswith("/open311/")
                            and "text/html" not in response.get("content", {})):
                        response["content"] = problem
                    elif "HTTPValidationError" in str(response.get("content")):
                        # FastAPI's own 422, whose schema is removed above: a dangling
                        # reference stops ReDoc from rendering anything.
                        del responses[code]
        _teach(schema, {**BASE_GUIDES, **(guides or {})})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
