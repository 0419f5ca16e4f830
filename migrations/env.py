"""Alembic environment: runs migrations over an async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import case_api.models
import intake_api.models
import intake_api.webhooks.models
import metrics_worker.models
import shared.auth
import shared.tables
from shared.db import Base

target_metadata = Base.metadata
SCHEMAS = ("auth", "intake", "cases", "metrics")
_ = (case_api.models, intake_api.models, intake_api.webhooks.models, metrics_worker.models,
     shared.auth)


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name in SCHEMAS
    return True


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=include_name,
        version_table_schema="public",
        compare_type=True,
    )
    with context.begin_transaction():
        # Several processes may start at once (compose, tests): one migrates, the others wait.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('aduan.migrations'))"))
        context.run_migrations()


async def run_async_migrations() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not configured"
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
        await connection.commit()
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
