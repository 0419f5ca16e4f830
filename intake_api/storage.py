"""Where the bytes of attachments live, behind one small interface.

The default keeps them in PostgreSQL (``intake.attachment_chunks``, 1 MiB pieces), written in the
same transaction as the attachment's row and its event: a file is stored exactly when it is
listed. An object-store backend (S3, MinIO, GCS) implements the same two methods; see
``docs/attachments.md`` for how it plugs in and what it must guarantee.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import IO, Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from intake_api.models import AttachmentChunk
from shared.db import Database, database_of

CHUNK_BYTES = 1024 * 1024


class AttachmentStore(Protocol):
    async def save(self, session: AsyncSession, attachment_id: uuid.UUID,
                   content: IO[bytes]) -> None:
        """Stores the bytes; ``session`` is the transaction the attachment's row commits in."""

    def read(self, attachment_id: uuid.UUID) -> AsyncIterator[bytes]:
        """The stored bytes, in order, a piece at a time."""


class PostgresAttachmentStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def save(self, session: AsyncSession, attachment_id: uuid.UUID,
                   content: IO[bytes]) -> None:
        seq = 0
        while piece := content.read(CHUNK_BYTES):
            await session.execute(insert(AttachmentChunk).values(
                attachment_id=attachment_id, seq=seq, data=piece))
            seq += 1

    async def read(self, attachment_id: uuid.UUID) -> AsyncIterator[bytes]:
        # Its own transaction: a download streams after the request's session has closed.
        async with self.database.transaction() as session:
            rows = await session.stream(
                select(AttachmentChunk.data)
                .where(AttachmentChunk.attachment_id == attachment_id)
                .order_by(AttachmentChunk.seq)
                .execution_options(yield_per=1))
            async for (data,) in rows:
                yield data


def attachment_store(request: Request) -> AttachmentStore:
    return PostgresAttachmentStore(database_of(request))


async def _attachment_store(request: Request) -> AttachmentStore:
    return attachment_store(request)


StoreDep = Annotated[AttachmentStore, Depends(_attachment_store)]
