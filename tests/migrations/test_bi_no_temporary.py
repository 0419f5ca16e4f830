"""Migration ``20261130_bi_no_temporary`` run by a role that does not own the database.

PostgreSQL answers such a role's REVOKE with a WARNING only, which neither asyncpg nor alembic
report: the migration must say itself that ``PUBLIC`` still holds ``TEMPORARY``.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.migrate import alembic_config

REVISION = "20261130_bi_no_temporary"
PREVIOUS = "20261129_hour_histograms"
PUBLIC_MAY_MAKE_TEMPORARY = text("""
    SELECT EXISTS (
      SELECT FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
      WHERE d.datname = current_database() AND a.grantee = 0
        AND a.privilege_type = 'TEMPORARY')""")


def _upgraded_as(connection: Connection, database_url: str, role: str | None) -> bool:
    """Upgrades to the revision as ``role`` (None: the owner); whether PUBLIC keeps TEMPORARY."""
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.downgrade(config, PREVIOUS)
    if role is not None:
        connection.execute(text(f'SET ROLE "{role}"'))
    command.upgrade(config, REVISION)
    connection.execute(text("RESET ROLE"))
    kept = bool(connection.execute(PUBLIC_MAY_MAKE_TEMPORARY).scalar())
    command.upgrade(config, "head")
    return kept


async def test_a_revoke_without_effect_is_reported(database_url: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(database_url)
    async with engine.connect() as connection:
        database = (await connection.execute(
            text("SELECT quote_ident(current_database())"))).scalar_one()
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE ROLE "{tenant}" NOLOGIN'))
            await connection.execute(text(f'GRANT CONNECT ON DATABASE {database} TO "{tenant}"'))
            await connection.execute(text(
                f'GRANT SELECT, UPDATE ON public.alembic_version TO "{tenant}"'))
            await connection.commit()
            with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
                assert await connection.run_sync(_upgraded_as, database_url, tenant)
            await connection.commit()
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("PUBLIC may still create temporary tables" in m
                       and f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC" in m
                       for m in warned), warned
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
                assert not await connection.run_sync(_upgraded_as, database_url, None)
            await connection.commit()
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        async with engine.connect() as connection:
            await connection.execute(text(f'REVOKE ALL ON public.alembic_version FROM "{tenant}"'))
            await connection.execute(text(f'REVOKE ALL ON DATABASE {database} FROM "{tenant}"'))
            await connection.execute(text(f'DROP ROLE IF EXISTS "{tenant}"'))
            await connection.commit()
        await engine.dispose()
