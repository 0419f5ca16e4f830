"""Real backing services for the whole suite.

PostgreSQL: ``ADUAN_TEST_DATABASE_URL`` or an embedded server in a temporary directory.
Kafka: ``ADUAN_TEST_KAFKA_BOOTSTRAP_SERVERS`` or a broker started by ``services.kafka``.
Each test gets a fresh database cloned from a migrated template, and its own topic prefix.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.kafka import KafkaBroker, start_kafka
from services.migrate import migrate_async
from services.postgres import start_postgres
from tests.support import BackingServices, database_named, reachable_dir, server_command

# The headless browser fixtures (``browser``, ``new_page``, ``artifacts``) for page tests.
pytest_plugins = ["tests.browser"]

TEMPLATE = "aduan_template"


@pytest.fixture(scope="session")
def reachable_base() -> Iterator[Path]:
    with reachable_dir("aduan-tests-") as base:
        yield base


@pytest.fixture
def tmp_path(reachable_base: Path) -> Path:
    """A fresh folder per test that the embedded PostgreSQL can reach when run as root.

    pytest's own are under a mode-700 folder (pytest narrows it again every session); the
    launcher refuses to widen folders, so the tests use folders of their own.
    """
    path = Path(tempfile.mkdtemp(dir=reachable_base))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session")
def server_url(reachable_base: Path) -> Iterator[str]:
    given = os.environ.get("ADUAN_TEST_DATABASE_URL")
    if given:
        yield given
        return
    pg = start_postgres(reachable_base / "pg", temporary=True)
    try:
        yield pg.url()
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("ADUAN_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    broker: KafkaBroker = start_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
async def template(server_url: str) -> str:
    await server_command(server_url, f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    await server_command(server_url, f'CREATE DATABASE "{TEMPLATE}"')
    await migrate_async(database_named(server_url, TEMPLATE))
    return TEMPLATE


@pytest.fixture
async def database_url(server_url: str, template: str) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await server_command(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield database_named(server_url, name)
    await server_command(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def second_database_url(server_url: str, template: str) -> AsyncIterator[str]:
    """Another fresh, migrated database, to compare two ways of reaching one state."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    await server_command(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield database_named(server_url, name)
    await server_command(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> BackingServices:
    """The database of this test, without Kafka (the embedded event log)."""
    return BackingServices(database_url=database_url, kafka=None, workdir=tmp_path)


@pytest.fixture
def kafka_services(database_url: str, kafka: str, tmp_path: Path) -> BackingServices:
    """The database of this test and the Kafka broker, with topics and groups of its own."""
    return BackingServices(database_url=database_url, kafka=kafka, workdir=tmp_path,
                           prefix=f"t{uuid.uuid4().hex[:8]}.")


@pytest.fixture(scope="session")
async def published(server_url: str, template: str,
                    tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BackingServices]:
    """A database holding the quarter Ombudsman Babel published, imported once through the API.

    Shared by the tests that only read figures (BI views, CSV, dashboard): never change it.
    """
    from services import published_quarter
    from tests.fixtures.history import settled
    from tests.support import running_app

    name = f"q_{uuid.uuid4().hex[:12]}"
    await server_command(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    backing = BackingServices(database_url=database_named(server_url, name), kafka=None,
                              workdir=tmp_path_factory.mktemp("published"))
    admin = await backing.token("admin", name="importer")
    quarter = published_quarter.build()
    async with running_app(backing) as client:
        await published_quarter.load(published_quarter.Api(client, admin), quarter,
                                     case_timeout=300)
        await settled(backing.database_url, quarter, timeout=600)
    yield backing
    await server_command(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
