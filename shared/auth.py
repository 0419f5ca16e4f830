"""Tokens (bearer, or the password of HTTP Basic): five roles, stored as SHA-256 hashes."""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import DateTime, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, database_of
from shared.problems import Problem
from shared.text import is_blank, is_storable, printable
from shared.vocabulary import AGENCY_CODE

TOKEN_PREFIX = "adu_"
MAX_NAME_LENGTH = 100


class Role(enum.StrEnum):
    partner = "partner"
    assistant = "assistant"
    liaison = "liaison"
    analyst = "analyst"
    admin = "admin"


class Token(Base):
    __tablename__ = "tokens"
    __table_args__ = {"schema": "auth"}  # noqa: RUF012

    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
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


def check_new_token(name: str, role: Role, agency_code: str | None) -> None:
    """Raises ValueError (one line, for the command line) unless the token may be created as
    asked. The name shows up as ``submitted_by`` and in logs: short, printable, visible."""
    if not is_storable(name) or not name.isprintable() or is_blank(name):
        raise ValueError("a token name must be printable text, not blank")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a token name may have at most {MAX_NAME_LENGTH} characters "
                         f"(got {len(name)})")
    if role is Role.liaison and not agency_code:
        raise ValueError("--agency is required for a liaison token")
    if role is not Role.liaison and agency_code:
        raise ValueError("--agency is only for liaison tokens")
    if agency_code is not None and not re.fullmatch(AGENCY_CODE, agency_code):
        raise ValueError(f"--agency {printable(agency_code)[:80]!r} is not an agency code "
                         "(lower-case letters, digits and '-', 2..64 characters, e.g. "
                         "pln-uiw-babel)")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(
    session: AsyncSession, *, name: str, role: Role, agency_code: str | None = None
) -> str:
    """Stores a new token's hash and returns the token, which is never stored in clear.

    A name is never reused, not even a revoked token's: complaints are scoped to their
    submitter's name, and a new token under an old name would inherit them."""
    check_new_token(name, role, agency_code)
    existing = await session.get(Token, name)
    if existing is not None and existing.revoked_at is None:
        raise ValueError(f"a token named {name!r} already exists")
    if existing is not None:
        raise ValueError(f"a token named {name!r} was revoked; its name is not reused, so that "
                         "its complaints stay its own: choose another name")
    token = new_token()
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


# Both schemes are offered: API clients send a bearer token; spreadsheets, BI "from web"
# connectors and browsers send Basic with the token as the password (any user name).
# Basic comes first: browsers read the first challenge of the header to decide to ask for a
# password (that is how a person opens /dashboard).
CHALLENGE = 'Basic realm="aduan", charset="UTF-8", Bearer realm="aduan"'
INVALID_TOKEN_CHALLENGE = ('Basic realm="aduan", charset="UTF-8", '
                           'Bearer realm="aduan", error="invalid_token"')


def presented_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>`` or ``Basic base64(<any>:<token>)``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        _, colon, password = decoded.partition(":")
        if colon and password:
            return password
        raise Problem(401, "Basic credentials must be base64 of user:token, with the token as "
                           "the password.", headers={"WWW-Authenticate": CHALLENGE})
    if scheme.lower() != "bearer" or not value:
        raise Problem(401, "A token is required: Authorization: Bearer <token>, or HTTP Basic "
                           "with the token as the password.",
                      headers={"WWW-Authenticate": CHALLENGE})
    return value


async def current_actor(request: Request) -> Actor:
    cached: Actor | None = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    presented = presented_token(request)
    async with database_of(request).sessionmaker() as session:
        actor = await authenticate(session, presented)
    if actor is None:
        raise Problem(401, "The token is unknown or revoked.",
                      headers={"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})
    request.state.actor = actor
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(actor.name)
    return actor


def require(*roles: Role) -> Callable[[Request], Awaitable[Actor]]:
    """A dependency admitting only the given roles (admin always)."""
    allowed = {*roles, Role.admin}

    async def dependency(request: Request) -> Actor:
        actor = await current_actor(request)
        if actor.role not in allowed:
            raise Problem(403, f"The role {actor.role.value} may not do this.")
        return actor

    return dependency
