"""The bus under test: each contract test runs once on Kafka and once on the database log."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.shared.buses import Bus, DatabaseBus, KafkaBus
from tests.shared.probe import Probe
from tests.support import BackingServices


def _url(backing: BackingServices) -> str:
    url = backing.settings().database_url
    assert url is not None
    return url


@pytest.fixture(params=["database", "kafka"])
def backing(request: pytest.FixtureRequest) -> BackingServices:
    # Looked up, not requested, so that the database runs need no broker.
    services: BackingServices = request.getfixturevalue(
        "kafka_services" if request.param == "kafka" else "services")
    return services


@contextlib.asynccontextmanager
async def _bus_on(backing: BackingServices) -> AsyncIterator[Bus]:
    async with Probe.opened(_url(backing)) as probe:
        bus: Bus = (KafkaBus(probe, backing.kafka, backing.prefix) if backing.kafka
                    else DatabaseBus(probe))
        try:
            yield bus
        finally:
            await bus.close()


@pytest.fixture
async def bus(backing: BackingServices) -> AsyncIterator[Bus]:
    async with _bus_on(backing) as bus:
        yield bus


@pytest.fixture
async def kafka_bus(kafka_services: BackingServices) -> AsyncIterator[KafkaBus]:
    async with _bus_on(kafka_services) as bus:
        assert isinstance(bus, KafkaBus)
        yield bus


@pytest.fixture
async def probe(services: BackingServices) -> AsyncIterator[Probe]:
    """The probe service on its own, without a consumer."""
    async with Probe.opened(_url(services)) as probe:
        yield probe
