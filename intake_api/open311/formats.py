"""GeoReport v2 responses in its two formats (``shared.open311`` renders them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import Response

from shared.open311 import MEDIA_TYPES, Format, Record, error_list, rendered

__all__ = ["MEDIA_TYPES", "Format", "Open311Error", "Record", "render", "render_error"]


class Open311Error(Exception):
    """An error the specification answers as a list of ``{code, description}``."""

    def __init__(self, status: int, *descriptions: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__("; ".join(descriptions))
        self.status = status
        self.descriptions = descriptions
        self.headers = dict(headers or {})


def render(fmt: Format, root: str, element: str, records: Sequence[Record], *,
           status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(rendered(fmt, root, element, records), status_code=status,
                    media_type=MEDIA_TYPES[fmt], headers=headers)


def render_error(fmt: Format, error: Open311Error) -> Response:
    return Response(error_list(fmt, error.status, *error.descriptions), status_code=error.status,
                    media_type=MEDIA_TYPES[fmt], headers=error.headers)
