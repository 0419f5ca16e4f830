"""Tokens (bearer, or the password of HTTP Basic): five roles, stored as SHA-256 hashes.

Endpoints take the caller as a typed dependency, ``require(*roles)``, naming the roles an
operation admits. Both schemes come from ``fastapi.security``, so the OpenAPI
document declares them for every operation that needs a token.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from sqlalchemy import DateTime, String, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import HTTPConnection

from shared.db import Base, WrittenAt
from shared.problems import Problem
from shared.ratelimit import rate_limiter_of
from shared.runtime import Runtime, runtime_of
from shared.text import is_blank, is_storable, printable
from shared.token_cache import REVOCATIONS, RevocableCache, forget_everywhere
from shared.vocabulary import AGENCY_CODE, UNASSIGNED_AGENCY_CODE

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
    created_at: Mapped[WrittenAt]
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
    if agency_code == UNASSIGNED_AGENCY_CODE:
        raise ValueError(f"--agency {UNASSIGNED_AGENCY_CODE} names no agency: a liaison answers "
                         "for one agency, and reports filed unassigned are the assistants' to "
                         "give one")


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
    # Heard at the commit by every running process, which forgets the callers it kept; this
    # one forgets them now.
    await session.execute(select(func.pg_notify(REVOCATIONS, name)))
    forget_everywhere()
    return True


# Built once: the look-up runs on every request whose caller is not kept.
_BY_HASH = select(Token.name, Token.role, Token.agency_code, Token.token_hash,
                  Token.revoked_at).where(Token.token_hash == bindparam("digest"))


async def authenticate(session: AsyncSession, presented: str,
                       kept: RevocableCache[Actor] | None = None) -> Actor | None:
    """The caller a token names, or None. ``kept`` spares the look-up for tokens presented
    lately, for as long as revocations are heard (``shared.token_cache``)."""
    digest = hash_token(presented)
    if kept is not None and (actor := kept.get(digest)) is not None:
        return actor
    generation = kept.generation if kept is not None else 0
    row = (await session.execute(_BY_HASH, {"digest": digest})).first()
    # The lookup is by hash; the constant-time compare guards against any index timing signal.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    actor = Actor(name=row.name, role=Role(row.role), agency_code=row.agency_code)
    if kept is not None:
        kept.put(digest, actor, generation)
    return actor


# Both schemes are offered: API clients send a bearer token; spreadsheets, BI "from web"
# connectors and browsers send Basic with the token as the password (any user name).
# Basic comes first: browsers read the first challenge of the header to decide to ask for a
# password (that is how a person opens /dashboard).
CHALLENGE = 'Basic realm="aduan", charset="UTF-8", Bearer realm="aduan"'
INVALID_TOKEN_CHALLENGE = ('Basic realm="aduan", charset="UTF-8", '
                           'Bearer realm="aduan", error="invalid_token"')


class TokenAsPassword(HTTPBasic):
    """HTTP Basic with the token as the password. Read strictly, as the token is a secret:
    FastAPI's own parser accepts loose base64 and an empty password, and answers a malformed
    header with a 401 whose challenge names Basic alone."""

    async def __call__(  # type: ignore[override]
        self, request: HTTPConnection,
    ) -> HTTPBasicCredentials | None:
        scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "basic" or not value:
            return None
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
            decoded = ""
        user, colon, password = decoded.partition(":")
        if not (colon and password):
            raise Problem(401, "Basic credentials must be base64 of user:token, with the token "
                               "as the password.", headers={"WWW-Authenticate": CHALLENGE})
        return HTTPBasicCredentials(username=user, password=password)


# Neither scheme answers on its own (auto_error=False): one 401 names both, Basic first.
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False,
                    description="A token made by `aduan token create`.")
BASIC = TokenAsPassword(scheme_name="basic", auto_error=False,
                        description="Any user name, the token as the password.")


def _token(bearer: HTTPAuthorizationCredentials | None,
           basic: HTTPBasicCredentials | None) -> str:
    """The token of ``Authorization: Bearer <token>`` or ``Basic base64(<any>:<token>)``."""
    if basic is not None:
        return basic.password
    if bearer is None:
        raise Problem(401, "A token is required: Authorization: Bearer <token>, or HTTP Basic "
                           "with the token as the password.",
                      headers={"WWW-Authenticate": CHALLENGE})
    return bearer.credentials


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
Basic = Annotated[HTTPBasicCredentials | None, Depends(BASIC)]


async def _known_caller(runtime: Runtime, presented: str) -> Actor:
    """The caller the token names. A token presented lately is known without a session; any
    other is looked up on a short session of its own: the request's transaction should not
    begin before the caller is known."""
    actor = runtime.tokens.get(hash_token(presented))
    if actor is None:
        async with runtime.database.sessionmaker() as session:
            actor = await authenticate(session, presented, runtime.tokens)
    if actor is None:
        raise Problem(401, "The token is unknown or revoked.",
                      headers={"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})
    return actor


def require(*roles: Role) -> Callable[..., Awaitable[Actor]]:
    """A dependency admitting only the given roles (admin always): the caller the token names
    (401), within its token's rate (429 with Retry-After), then its role (403). The rate is
    counted before the role check, so refused calls cost the caller as much as admitted ones.

    One dependency for all three: each dependency FastAPI resolves costs a request about as
    much as the work it does here, and this one runs on every call.
    """
    allowed = {*roles, Role.admin}

    async def dependency(request: Request, bearer: Bearer, basic: Basic) -> Actor:
        known: Actor | None = getattr(request.state, "actor", None)
        if known is not None:  # another dependency of this request counted it already
            actor = known
        else:
            actor = await _known_caller(runtime_of(request), _token(bearer, basic))
            request.state.actor = actor  # for the access log
            rate_limiter_of(request).check(actor.name)
        if actor.role not in allowed:
            raise Problem(403, f"The role {actor.role.value} may not do this.")
        return actor

    return dependency
