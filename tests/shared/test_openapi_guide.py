"""The OpenAPI document teaches: every operation described, with a request and an answer that
fit its own schemas, the workflow table and the roles included."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from case_api.workflow import PUBLIC_ACTIONS, WORKFLOW
from services.allinone import create_app
from shared.settings import Settings

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app("all", Settings(database_url="postgresql+asyncpg://nobody@/unused"))
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS]


def check(document: dict[str, Any], schema: dict[str, Any], example: Any, where: str) -> None:
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012))
    pointer = schema["$ref"].removeprefix("#") if "$ref" in schema else None
    root = {"$ref": f"urn:openapi#{pointer}"} if pointer else schema
    errors = [e.message for e in Draft202012Validator(root, registry=registry)
              .iter_errors(example)]
    assert not errors, (where, errors[:3])


def test_every_operation_has_a_description_and_worked_examples(
        document: dict[str, Any]) -> None:
    found = operations(document)
    assert len(found) >= 18
    for method, path, operation in found:
        where = f"{method.upper()} {path}"
        assert len(operation.get("description", "")) > 40, where
        successes = {code: r for code, r in operation["responses"].items()
                     if code.startswith("2")}
        examples = [(media, content) for r in successes.values()
                    for media, content in r.get("content", {}).items() if "example" in content]
        # An answer without a body (204, or an operation that is always 410) has none to show.
        bodiless = all(not r.get("content") for r in successes.values())
        assert examples or bodiless, f"{where}: no example answer"
        for media, content in examples:
            if media == "application/json" and "schema" in content:
                check(document, content["schema"], content["example"], f"{where} answer")
        body = operation.get("requestBody")
        if body is not None:
            for media, content in body["content"].items():
                assert "example" in content, f"{where}: no example request ({media})"
                if "schema" in content and media == "application/json":
                    check(document, content["schema"], content["example"], f"{where} request")
        if path.startswith("/v1/"):
            assert {"bearer": []} in operation["security"], where
            assert {"basic": []} in operation["security"], where
            assert "Roles:" in operation["description"], where


def test_the_transitions_operation_carries_the_workflow_table(document: dict[str, Any]) -> None:
    text = document["paths"]["/v1/cases/{case_id}/transitions"]["post"]["description"]
    assert "| action | from | to | role | required | optional |" in text
    for name in PUBLIC_ACTIONS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name.value}` |"))
        target = WORKFLOW[name].target
        assert f"| {target.value if target else 'the same status'} |" in row, row
    assert "| `withdraw` | any open status | closed | assistant |" in text
    assert ("| `assign_agency` | received, awaiting_completion, registered | the same status | "
            "assistant | reported_agency | note |") in text
    assert "| `respond` | awaiting_agency, corrective_action | agency_responded | assistant, "\
           "liaison | note, resolution |" in text


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    """A dangling ``$ref`` leaves ReDoc showing nothing but an error."""
    text = json.dumps(document)
    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert name in document["components"]["schemas"], name
