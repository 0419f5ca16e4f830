"""The running app with an admin importing a history, as most metrics tests begin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.metrics_worker.helpers import Importer
from tests.support import BackingServices, running_app


@pytest.fixture
async def history(services: BackingServices) -> AsyncIterator[Importer]:
    admin = await services.token("admin")
    async with running_app(services) as client:
        yield Importer(client, admin)
