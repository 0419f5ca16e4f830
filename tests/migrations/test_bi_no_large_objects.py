"""Migration ``20261130_bi_no_large_objects``: the downgrade gives PUBLIC the large-object
writers back, the upgrade takes them, and one run by a role that is not a superuser (whose
REVOKE PostgreSQL answers with a WARNING only) says what is left to do."""

from __future__ import annotations

import logging
import uuid

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.bi_users import PUBLIC_MAY_WRITE_LARGE_OBJECTS
from services.migrate import alembic_config

REVISION = "20261130_bi_no_large_objects"
PREVIOUS = "20261130_metrics_assignments"


def _upgraded_as(connection: Connection, database_url: str, role: str | None) -> tuple[str, str]:
    """What PUBLIC may run after the downgrade, and after the upgrade as ``role`` (None: the
    superuser the tests run as)."""
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.downgrade(config, PREVIOUS)
    before = str(connection.execute(text(PUBLIC_MAY_WRITE_LARGE_OBJECTS)).scalar())
    if role is not None:
        connection.execute(text(f'SET ROLE "{role}"'))
    command.upgrade(config, REVISION)
    connection.execute(text("RESET ROLE"))
    after = str(connection.execute(text(PUBLIC_MAY_WRITE_LARGE_OBJECTS)).scalar())
    command.upgrade(config, "head")
    return before, after


async def test_the_writers_are_taken_from_public_or_the_operator_is_told(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE ROLE "{tenant}" NOLOGIN'))
            await connection.execute(text(
                f'GRANT SELECT, UPDATE ON public.alembic_version TO "{tenant}"'))
            await connection.commit()
            with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
                before, after = await connection.run_sync(_upgraded_as, database_url, tenant)
            await connection.commit()
            assert "lo_from_bytea(oid,bytea)" in before
            assert "lo_create(oid)" in before
            assert after == before
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("PUBLIC may still write large objects" in m
                       and f"REVOKE EXECUTE ON FUNCTION {before} FROM PUBLIC" in m
                       for m in warned), warned
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
                before, after = await connection.run_sync(_upgraded_as, database_url, None)
            await connection.commit()
            assert "lo_from_bytea(oid,bytea)" in before
            assert after == ""
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        async with engine.connect() as connection:
            await connection.execute(text(f'REVOKE ALL ON public.alembic_version FROM "{tenant}"'))
            await connection.execute(text(f'DROP ROLE IF EXISTS "{tenant}"'))
            await connection.commit()
        await engine.dispose()
