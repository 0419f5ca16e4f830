"""Webhook tests that involve the event stream run once on Kafka and once on the database log."""

from __future__ import annotations

import pytest

from tests.support import BackingServices


@pytest.fixture(params=["database", "kafka"])
def backing(request: pytest.FixtureRequest) -> BackingServices:
    # Looked up, not requested, so that the database runs need no broker.
    services: BackingServices = request.getfixturevalue(
        "kafka_services" if request.param == "kafka" else "services")
    return services
