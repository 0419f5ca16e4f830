"""The OpenAPI description: every error documented as RFC 9457 problem JSON."""

from __future__ import annotations

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


def install_openapi(app: FastAPI) -> None:
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
                for code, response in responses.items():
                    # Open311 answers its errors as the standard's lists, not problem JSON;
                    # HTML pages (the complainant's status page) answer theirs as pages.
                    if (code[0] in "45" and not path.startswith("/open311/")
                            and "text/html" not in response.get("content", {})):
                        response["content"] = problem
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
