"""The two formats of GeoReport v2: a JSON array, or XML with a root element and one child each."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree

from fastapi import Response

Record = Mapping[str, Any]


class Format(enum.StrEnum):
    json = "json"
    xml = "xml"


MEDIA_TYPES = {Format.json: "application/json; charset=utf-8",
               Format.xml: "text/xml; charset=utf-8"}


class Open311Error(Exception):
    """An error the specification answers as a list of ``{code, description}``."""

    def __init__(self, status: int, *descriptions: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__("; ".join(descriptions))
        self.status = status
        self.descriptions = descriptions
        self.headers = dict(headers or {})


# Characters XML 1.0 cannot carry at all, even escaped; stored text may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _xml_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def render(fmt: Format, root: str, element: str, records: Sequence[Record], *,
           status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    if fmt is Format.json:
        body = json.dumps(list(records), ensure_ascii=False).encode()
    else:
        tree = ElementTree.Element(root)
        for record in records:
            child = ElementTree.SubElement(tree, element)
            for name, value in record.items():
                ElementTree.SubElement(child, name).text = _xml_text(value)
        body = _DECLARATION + ElementTree.tostring(tree, encoding="unicode").encode()
    return Response(body, status_code=status, media_type=MEDIA_TYPES[fmt], headers=headers)


def render_error(fmt: Format, error: Open311Error) -> Response:
    records = [{"code": error.status, "description": text} for text in error.descriptions]
    return render(fmt, "errors", "error", records, status=error.status, headers=error.headers)
