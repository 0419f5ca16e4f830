"""What counts as text: valid Unicode that PostgreSQL can store, and visible where required."""

from __future__ import annotations

import unicodedata
from typing import Any

# Letters that render as nothing: Hangul fillers, the braille blank. Whitespace and the format
# characters (zero-width spaces and joiners, the byte-order mark, direction marks) are found by
# their Unicode category.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})


def is_storable(value: str) -> bool:
    """False for NUL (PostgreSQL text cannot hold it) and for lone UTF-16 surrogates, which are
    not Unicode text at all: JSON's ``\\ud800`` escape makes one."""
    return "\x00" not in value and _encodable(value)


def is_blank(value: str) -> bool:
    """True when nothing in the value would be seen: whitespace, zero-width characters."""
    return all(c in _INVISIBLE_LETTERS or unicodedata.category(c) in _INVISIBLE_CATEGORIES
               for c in value)


def printable(value: str) -> str:
    """The value with anything not encodable spelled as an escape, safe to echo or log."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def first_unencodable(document: Any, pointer: str = "") -> str | None:
    """The JSON pointer of the first key or string in a parsed JSON document holding a lone
    surrogate, or None."""
    if isinstance(document, str):
        return None if _encodable(document) else pointer or "/"
    if isinstance(document, list):
        for index, item in enumerate(document):
            found = first_unencodable(item, f"{pointer}/{index}")
            if found is not None:
                return found
    if isinstance(document, dict):
        for key, item in document.items():
            step = f"{pointer}/{printable(key).replace('~', '~0').replace('/', '~1')}"
            if not _encodable(key):
                return step
            found = first_unencodable(item, step)
            if found is not None:
                return found
    return None


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
