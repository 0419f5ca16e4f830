"""Opaque keyset cursors for ``?cursor=``."""

from __future__ import annotations

import base64
from typing import Literal, overload

from shared.problems import invalid
from shared.text import is_storable

# Keyset positions are BIGINT sequence numbers or short codes; anything else was not issued here.
MAX_POSITION = 2**63 - 1
MAX_TEXT_POSITION = 64


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
