"""The migrations build exactly the schema the models describe, and go down and up again."""

from __future__ import annotations

import asyncio

from alembic import command

from services.migrate import alembic_config


async def test_models_and_migrations_agree(database_url: str) -> None:
    # Raises when autogenerate would find any difference between models and database.
    await asyncio.to_thread(command.check, alembic_config(database_url))


async def test_downgrade_to_nothing_and_upgrade_again(database_url: str) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.check, config)
