"""The SQL views BI tools read, and the read-only role that sees only them."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from tests.metrics_worker.helpers import Importer
from tests.support import BackingServices, running_app


def dsn(url: str, username: str | None = None) -> str:
    return asyncpg_dsn(url, username=username)


async def test_views_give_local_dates_and_the_bi_role_sees_only_them(
    services: BackingServices,
) -> None:
    admin = await services.token("admin")
    async with running_app(services) as client:
        history = Importer(client, admin)
        case_id = await history.receive("2022-04-01T06:00:00+07:00")
        await history.opened(case_id)
        await history.act(case_id, "register", "2022-04-02T10:00:00+07:00")
        await history.settled(1, 1)

    owner = await asyncpg.connect(dsn(services.database_url))
    login = f"bi_{uuid.uuid4().hex[:8]}"
    try:
        row = await owner.fetchrow("SELECT * FROM metrics.bi_cases")
        assert row is not None
        assert str(row["received_local_date"]) == "2022-04-01"
        assert row["received_month"] == "2022-04"
        assert row["received_year"] == 2022
        contact = await owner.fetchrow("SELECT * FROM metrics.bi_contacts")
        assert contact is not None
        assert contact["is_received_report"] is True
        step = await owner.fetchrow("SELECT * FROM metrics.bi_transitions")
        assert step is not None
        assert step["action"] == "register"
        assert step["effective_month"] == "2022-04"

        await owner.execute(f"CREATE ROLE {login} LOGIN IN ROLE aduan_bi")
        reader = await asyncpg.connect(dsn(services.database_url, username=login))
        try:
            assert await reader.fetchval("SELECT count(*) FROM metrics.bi_cases") == 1
            for table in ("metrics.cases", "intake.complaints", "auth.tokens",
                          "cases.cases"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await reader.fetch(f"SELECT * FROM {table}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute("DELETE FROM metrics.bi_targets")
        finally:
            await reader.close()
    finally:
        await owner.execute(f"DROP ROLE IF EXISTS {login}")
        await owner.close()
