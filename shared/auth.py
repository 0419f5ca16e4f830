"""Bearer tokens: five roles, stored only as SHA-256 hashes, revocable at once."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import DateTime, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, DatabaseDep
from shared.problems import Problem
from shared.ratelimit import RateLimiterDep

TOKEN_PREFIX = "adu_"


class Role(enum.StrEnum):
    partner = "partner"
    assistant = "assistant"
    liaison = "liaison"
    analyst = "analyst"
    admin = "admin"


class Token(Base):
    __tablename__ = "tokens"
    __table_args__ = {"schema": "auth"}  # noqa: RUF012

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    agency_code: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role
    agency_code: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.assistant, Role.admin)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(
    session: AsyncSession, *, name: str, role: Role, agency_code: str | None = None
) -> str:
    """Stores a new token's hash and returns the token, which is never stored in clear."""
    if role is Role.liaison and not agency_code:
        raise ValueError("--agency is required for a liaison token")
    if role is not Role.liaison and agency_code:
        raise ValueError("--agency is only for liaison tokens")
    existing = await session.get(Token, name)
    if existing is not None and existing.revoked_at is None:
        raise ValueError(f"a token named {name!r} already exists")
    token = new_token()
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    session.add(Token(name=name, role=role.value, agency_code=agency_code,
                      token_hash=hash_token(token)))
    await session.flush()
    return token


async def revoke_token(session: AsyncSession, name: str) -> bool:
    token = await session.get(Token, name)
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = datetime.now(UTC)
    await session.flush()
    return True


async def authenticate(session: AsyncSession, presented: str) -> Actor | None:
    digest = hash_token(presented)
    query = select(Token).where(Token.token_hash == digest)
    row = (await session.execute(query)).scalar_one_or_none()
    # The lookup is by hash; the constant-time compare guards against any index timing signal.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Actor(name=row.name, role=Role(row.role), agency_code=row.agency_code)


# The scheme FastAPI documents in OpenAPI; the 401 is ours, as a problem with WWW-Authenticate.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="A token from `aduan token create`.")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def current_actor(credentials: BearerDep, database: DatabaseDep) -> Actor:
    """Who is calling (401 unless a valid token). Resolved once per request by FastAPI."""
    if credentials is None or not credentials.credentials.strip():
        raise Problem(401, "A bearer token is required.",
                      headers={"WWW-Authenticate": 'Bearer realm="aduan"'})
    async with database.sessionmaker() as session:
        actor = await authenticate(session, credentials.credentials.strip())
    if actor is None:
        raise Problem(401, "The token is unknown or revoked.",
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


async def within_rate_limit(actor: CurrentActor, limiter: RateLimiterDep) -> Actor:
    """The caller, once it is within its rate limit (429 otherwise)."""
    limiter.check(actor.name)
    return actor


def require(*roles: Role) -> Callable[..., Awaitable[Actor]]:
    """A dependency admitting only the given roles (admin always), within the rate limit."""
    allowed = {*roles, Role.admin}

    async def dependency(actor: Annotated[Actor, Depends(within_rate_limit)]) -> Actor:
        if actor.role not in allowed:
            raise Problem(403, f"The role {actor.role.value} may not do this.")
        return actor

    return dependency
