"""The two formats of GeoReport v2 (a JSON array, or XML with a root element and one child
each), for the Open311 endpoints (``intake_api/open311``) and for the refusals the HTTP server
makes itself before any app runs (``services/httpserver.py``): an Open311 client reads the
specification's error list, never problem JSON, whoever answers."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree

Record = Mapping[str, Any]
PREFIX = "/open311/"


class Format(enum.StrEnum):
    json = "json"
    xml = "xml"


MEDIA_TYPES = {Format.json: "application/json; charset=utf-8",
               Format.xml: "text/xml; charset=utf-8"}

# Characters XML 1.0 cannot carry at all, even escaped; stored text may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def format_of(path: str) -> Format:
    """The format a path (without its query) asks for."""
    return Format.xml if path.endswith(".xml") else Format.json


def _xml_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def rendered(fmt: Format, root: str, element: str, records: Sequence[Record]) -> bytes:
    if fmt is Format.json:
        return json.dumps(list(records), ensure_ascii=False).encode()
    tree = ElementTree.Element(root)
    for record in records:
        child = ElementTree.SubElement(tree, element)
        for name, value in record.items():
            ElementTree.SubElement(child, name).text = _xml_text(value)
    return _DECLARATION + ElementTree.tostring(tree, encoding="unicode").encode()


def error_list(fmt: Format, status: int, *descriptions: str) -> bytes:
    """The specification's error list: ``[{"code": status, "description": ...}]``."""
    return rendered(fmt, "errors", "error",
                    [{"code": status, "description": text} for text in descriptions])
