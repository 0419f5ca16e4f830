"""Property-based fuzzing of the whole OpenAPI document against a real server.

Schemathesis generates valid and invalid requests for every operation; every answer must be
documented, match its schema and content type, and never be a 5xx.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.support import BackingServices, ServiceProcess, database_named, server_command

pytestmark = pytest.mark.timeout(900)
EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzzed_server(server_url: str, template: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    name = f"fuzz_{uuid.uuid4().hex[:8]}"
    asyncio.run(server_command(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = database_named(server_url, name)
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    backing = BackingServices(url, None, workdir)
    token = asyncio.run(backing.token("admin", "fuzzer"))
    server = ServiceProcess("all", backing.env(), workdir / "server.log").start()
    try:
        asyncio.run(server.wait_ready())
        yield server.url, token
    finally:
        server.stop()
        asyncio.run(server_command(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_every_answer_is_documented_and_never_a_server_error(
    fuzzed_server: tuple[str, str],
) -> None:
    base_url, token = fuzzed_server
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    validations = [checks.not_a_server_error, checks.status_code_conformance,
                   checks.content_type_conformance, checks.response_schema_conformance]
    failures: dict[str, str] = {}
    operations = 0
    answers: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            response = case.call_and_validate(base_url=base_url, headers=headers,
                                              checks=validations)
            answers[response.status_code] += 1

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
    assert operations >= 12
    print(f"\nfuzzed {operations} operations with {sum(answers.values())} requests: "
          f"{dict(sorted(answers.items()))}")
    assert sum(answers.values()) >= operations * 10
    assert not any(code >= 500 for code in answers)
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
