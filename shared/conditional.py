"""``If-Match`` as RFC 9110 (section 13.1.1) has it: ``*`` or a list of entity tags, compared
strongly, so that a weak tag never matches."""

from __future__ import annotations

import re
from dataclasses import dataclass

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'[ \t]*(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|\Z)')
_EMPTY_ELEMENT = re.compile(r"[ \t]*,")


@dataclass(frozen=True)
class IfMatch:
    """A parsed ``If-Match``: ``any`` for ``*``, else the strong tags listed (quotes included)."""

    any: bool
    strong: frozenset[str]

    def matches(self, etag: str) -> bool:
        return self.any or etag in self.strong

    @classmethod
    def parse(cls, value: str) -> IfMatch:
        """Raises ValueError for a value that is neither ``*`` nor a list of entity tags (a bare
        ``5``, say, which is no entity tag and so can match nothing)."""
        if value.strip(" \t") == "*":
            return cls(any=True, strong=frozenset())
        strong: set[str] = set()
        position, end = 0, len(value)
        while position < end:
            empty = _EMPTY_ELEMENT.match(value, position)  # "a, , b" is allowed (RFC 9110 5.6.1)
            if empty:
                position = empty.end()
                continue
            if not value[position:].strip(" \t"):
                break  # trailing whitespace
            tag = _ENTITY_TAG.match(value, position)
            if tag is None:
                raise ValueError("not a list of entity tags")
            if tag.group(1) is None:
                strong.add(tag.group(2))
            position = tag.end()
        if not strong and '"' not in value:
            raise ValueError("no entity tag")
        return cls(any=False, strong=frozenset(strong))
