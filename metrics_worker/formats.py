"""JSON or CSV for every metrics ``GET`` (API.md, "Reading with other tools").

Answers are streamed in chunks, so a large one is never built whole in memory and the event
loop is given back between chunks.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse

from shared.problems import Problem
from shared.vocabulary import utc_text

Format = Literal["json", "csv"]
CSV = "text/csv"
CSV_MEDIA = "text/csv; charset=utf-8"
JSON_RANGES = {"application/json", "application/problem+json", "application/*", "*/*"}
CHUNK_ROWS = 500
SUMMARY_COLUMNS = ("figure", "key", "value")


def _accepted(header: str) -> dict[str, float]:
    """Media ranges of an ``Accept`` header with their weights (RFC 9110, 12.5.1)."""
    ranges: dict[str, float] = {}
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        ranges[media.lower()] = max(weight, ranges.get(media.lower(), 0.0))
    return ranges


def negotiate(request: Request, given: Format | None) -> Format:
    """``?format=`` first; else the ``Accept`` header; 406 when it admits neither."""
    if given is not None:
        return given
    header = request.headers.get("accept", "").strip()
    if not header:
        return "json"
    ranges = _accepted(header)
    csv_weight = max(ranges.get(CSV, 0.0), ranges.get("text/*", 0.0))
    json_weight = max((w for m, w in ranges.items() if m in JSON_RANGES), default=0.0)
    if csv_weight > 0 and csv_weight >= json_weight and ranges.get(CSV, 0.0) > 0:
        return "csv"
    if json_weight > 0:
        return "json"
    if csv_weight > 0:
        return "csv"
    raise Problem(406, f"Cannot answer {header[:200]!r}: this resource is available as "
                       "application/json or text/csv (or choose with ?format=json|csv).",
                  title="Not acceptable", slug="not-acceptable")


def _csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for count, row in enumerate(rows, 1):
        writer.writerow(["" if v is None else _text(v) for v in row])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        # As in JSON: RFC 3339 in UTC with a Z (API.md conventions), not str()'s "+00:00" form.
        return utc_text(value)
    return str(value)


async def _paced(chunks: Iterable[str]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")
        await asyncio.sleep(0)  # let other requests run between chunks


def csv_response(header: Sequence[str], rows: Iterable[Sequence[Any]],
                 filename: str) -> StreamingResponse:
    """RFC 4180 CSV: UTF-8, a header row, CRLF line ends."""
    return StreamingResponse(
        _paced(_csv_chunks(header, rows)), media_type=CSV_MEDIA,
        headers={"Content-Disposition": f'inline; filename="{filename}"'})


def json_rows_response(rows: Iterable[dict[str, Any]]) -> StreamingResponse:
    """``{"rows": [...]}``, written ``CHUNK_ROWS`` rows at a time."""

    def chunks() -> Iterator[str]:
        batch: list[dict[str, Any]] = []
        separator = ""
        for row in rows:
            batch.append(row)
            if len(batch) == CHUNK_ROWS:
                yield separator + _json_items(batch)
                batch, separator = [], ","
        if batch:
            yield separator + _json_items(batch)

    def document() -> Iterator[str]:
        yield '{"rows":['
        yield from chunks()
        yield "]}"

    return StreamingResponse(_paced(document()), media_type="application/json")


def _json_items(rows: list[dict[str, Any]]) -> str:
    """``rows`` as JSON array items, without the brackets: written by orjson in one call (the
    standard library's encoder, row by row, took most of a large answer's time), the bytes
    ``json.dumps(row, separators=(",", ":"))`` writes. orjson writes text beyond ASCII as it
    is, where ``json`` escapes it: such a chunk is written by ``json`` instead."""
    written = orjson.dumps(rows)
    if written.isascii():
        return written[1:-1].decode("ascii")
    return ",".join(json.dumps(row, separators=(",", ":")) for row in rows)


def figure_rows(document: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[
        tuple[str, str, Any]]:
    """A summary as ``(figure, key, value)`` rows.

    A value's ``key`` is its own name and ``figure`` the dotted path to the object holding it:
    ``received,,480``, ``received_by_month,2022-03,294``, ``targets.closures,rate,0.8192``,
    ``liaison.pln-uiw-babel,requests,3``. Top-level values have an empty key.
    """
    for name, value in document.items():
        if isinstance(value, dict):
            yield from figure_rows(value, (*path, name))
        elif path:
            yield ".".join(path), name, value
        else:
            yield name, "", value
