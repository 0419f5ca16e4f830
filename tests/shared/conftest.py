"""The bus under test: each contract test runs once on Kafka and once on the database log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.shared.buses import Bus, DatabaseBus, KafkaBus
from tests.shared.probe import Probe
from tests.support import BackingServices


async def _probe(backing: BackingServices) -> Probe:
    url = backing.settings().database_url
    assert url is not None
    return await Probe.create(url)


@pytest.fixture(params=["database", "kafka"])
def backing(request: pytest.FixtureRequest) -> BackingServices:
    # Looked up, not requested, so that the database runs need no broker.
    services: BackingServices = request.getfixturevalue(
        "kafka_services" if request.param == "kafka" else "services")
    return services


@pytest.fixture
async def bus(backing: BackingServices) -> AsyncIterator[Bus]:
    probe = await _probe(backing)
    bus: Bus = (KafkaBus(probe, backing.kafka, backing.prefix) if backing.kafka
                else DatabaseBus(probe))
    try:
        yield bus
    finally:
        await bus.close()
        await probe.database.dispose()


@pytest.fixture
async def kafka_bus(kafka_services: BackingServices) -> AsyncIterator[KafkaBus]:
    assert kafka_services.kafka is not None
    probe = await _probe(kafka_services)
    bus = KafkaBus(probe, kafka_services.kafka, kafka_services.prefix)
    try:
        yield bus
    finally:
        await bus.close()
        await probe.database.dispose()


@pytest.fixture
async def probe(services: BackingServices) -> AsyncIterator[Probe]:
    """The probe service on its own, without a consumer."""
    probe = await _probe(services)
    try:
        yield probe
    finally:
        await probe.database.dispose()
