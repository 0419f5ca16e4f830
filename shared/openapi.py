"""The OpenAPI description: every error documented as RFC 9457 problem JSON."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.problems import PROBLEM_JSON

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
COMMON = {
    "401": "Missing, unknown or revoked token",
    "403": "The caller's role may not do this",
    "422": "Invalid field (each named in `errors`)",
    "429": "Over the rate limit (see `Retry-After`)",
    "503": "At capacity, or a backing service is unavailable (see `Retry-After`)",
}
BODY = {"400": "Malformed JSON", "408": "The body did not arrive in time",
        "413": "Body over 256 KiB", "415": "Body is not JSON"}


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
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                extra = dict(COMMON) if path.startswith("/v1/") else {}
                if path.startswith("/v1/") and method in {"post", "put", "patch"}:
                    extra.update(BODY)
                if path.startswith("/v1/") and "{" in path:
                    extra["404"] = "Not found, or outside the caller's scope"
                if path.startswith("/v1/"):
                    operation["security"] = [{"bearer": []}]
                for code, text in extra.items():
                    responses.setdefault(code, {"description": text})
                for code, response in responses.items():
                    if code[0] in "45":
                        response["content"] = problem
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
