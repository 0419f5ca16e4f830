"""List pages: ``?limit=&cursor=`` in, ``items`` and ``next_cursor`` out, keyset underneath.

An endpoint takes ``paging: PagingDep``, asks its repository for ``paging.fetch`` rows after
``paging.after()`` (or ``paging.after_text()``), and answers ``paging.page(rows, key=...)``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar, overload

from fastapi import Depends, Query

from shared.problems import invalid
from shared.text import is_storable

# Keyset positions are BIGINT sequence numbers or short codes; anything else was not issued here.
MAX_POSITION = 2**63 - 1
MAX_TEXT_POSITION = 64

Row = TypeVar("Row")


def encode_cursor(after: int | str) -> str:
    tag = "i" if isinstance(after, int) else "s"
    return base64.urlsafe_b64encode(f"{tag}:{after}".encode()).decode().rstrip("=")


@overload
def decode_cursor(cursor: str, *, text: Literal[False] = False) -> int: ...
@overload
def decode_cursor(cursor: str, *, text: Literal[True]) -> str: ...
def decode_cursor(cursor: str, *, text: bool = False) -> int | str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, value = raw.partition(":")
        if text and tag == "s" and 0 < len(value) <= MAX_TEXT_POSITION and is_storable(value):
            return value
        if (not text and tag == "i" and value.isascii() and value.isdigit()
                and int(value) <= MAX_POSITION):
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise invalid("/query/cursor", "not a cursor this service issued")


@dataclass(frozen=True)
class Paging:
    limit: int
    cursor: str | None

    @property
    def fetch(self) -> int:
        """Rows to ask for: one more than a page tells whether another page follows."""
        return self.limit + 1

    def after(self) -> int | None:
        return decode_cursor(self.cursor) if self.cursor else None

    def after_text(self) -> str | None:
        return decode_cursor(self.cursor, text=True) if self.cursor else None

    def page(self, rows: Sequence[Row],
             key: Callable[[Row], int | str]) -> tuple[Sequence[Row], str | None]:
        """The page's rows, and the cursor of the next page (None on the last)."""
        if len(rows) <= self.limit:
            return rows, None
        return rows[:self.limit], encode_cursor(key(rows[self.limit - 1]))


async def paging(limit: Annotated[int, Query(ge=1, le=200)] = 50,
                 cursor: Annotated[str | None, Query(max_length=200)] = None) -> Paging:
    return Paging(limit, cursor)


PagingDep = Annotated[Paging, Depends(paging)]
