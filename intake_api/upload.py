"""Reading one evidence file from a ``multipart/form-data`` body as it streams in.

The body is parsed piece by piece as it arrives: the file goes to a spooled temporary file (in
memory up to 1 MiB, on disk beyond), and the upload is refused the moment it passes the size limit
or its first bytes show a kind of file that is not accepted, without reading the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass, field
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from intake_api import files
from shared.problems import Problem, invalid

MAX_FILE_BYTES = 10 * 1024 * 1024
# Boundaries, part headers (a long file name) and the ``confidential`` field around the file.
MAX_FRAMING_BYTES = 256 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_FIELD_BYTES = 16
MAX_PARTS = 4
SPOOL_IN_MEMORY_BYTES = 1024 * 1024
CHUNK_TIMEOUT_SECONDS = 30.0


@dataclass
class Upload:
    """The file of an upload, checked: its sniffed type, size and SHA-256."""

    content: IO[bytes]
    filename: str
    content_type: str
    size: int
    sha256: str
    confidential: bool

    def close(self) -> None:
        self.content.close()


def too_large() -> Problem:
    return Problem(413, f"An attachment may be at most {MAX_FILE_BYTES} bytes "
                        f"({MAX_FILE_BYTES // (1024 * 1024)} MiB).")


def unsupported() -> Problem:
    return Problem(415, "Only PDF, JPEG, PNG and WebP files are accepted; the type is decided "
                        "from the file's content, not its name.")


@dataclass
class _Part:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    name: str = ""
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


class _Collector:
    """python-multipart's callbacks: keeps the one ``file`` part and the ``confidential`` field."""

    def __init__(self) -> None:
        self.part = _Part()
        self.parts = 0
        self.field_name = bytearray()
        self.field_value = bytearray()
        self.file: IO[bytes] | None = None
        self.raw_filename: str | None = None
        self.hash = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.content_type: str | None = None
        self.confidential: bytes | None = None
        self.finished = False

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise invalid("/file", f"at most {MAX_PARTS} parts: one `file` and `confidential`")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.field_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers.append((bytes(self.field_name).lower(), bytes(self.field_value)))
        self.field_name.clear()
        self.field_value.clear()

    def on_headers_finished(self) -> None:
        disposition = next((v for k, v in self.part.headers if k == b"content-disposition"), b"")
        kind, options = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in options:
            raise Problem(400, "Each part needs Content-Disposition: form-data with a name.")
        self.part.name = options[b"name"].decode("utf-8", "replace")
        if self.part.name == "file":
            if self.file is not None:
                raise invalid("/file", "send exactly one part named `file`")
            self.part.is_file = True
            raw = options.get(b"filename")
            self.raw_filename = raw.decode("utf-8", "replace") if raw is not None else None
            # Closed by the Upload it becomes, or by close() when the upload is refused.
            self.file = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                max_size=SPOOL_IN_MEMORY_BYTES)
        elif self.part.name == "confidential":
            if self.confidential is not None:
                raise invalid("/confidential", "send `confidential` at most once")
        else:
            raise invalid(f"/{self.part.name}", "unknown part; send `file` and optionally "
                                                 "`confidential`")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        if not self.part.is_file:
            self.part.value += piece
            if len(self.part.value) > MAX_FIELD_BYTES:
                raise invalid("/confidential", "confidential must be `true` or `false`")
            return
        assert self.file is not None
        self.size += len(piece)
        if self.size > MAX_FILE_BYTES:
            raise too_large()
        if len(self.head) < files.SNIFF_BYTES:
            self.head += piece[:files.SNIFF_BYTES - len(self.head)]
            if not files.could_still_be_accepted(self.head):
                raise unsupported()
        self.hash.update(piece)
        self.file.write(piece)

    def on_part_end(self) -> None:
        if self.part.name == "confidential":
            self.confidential = bytes(self.part.value)

    def on_end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data":
        raise Problem(415, "Send the attachment as multipart/form-data with one part `file`.")
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise Problem(400, "The multipart/form-data body needs a boundary (1..200 characters).")
    return boundary


def _confidential(value: bytes | None) -> bool:
    text = (value or b"false").decode("ascii", "replace").strip().lower()
    if text not in {"true", "false"}:
        raise invalid("/confidential", "confidential must be `true` or `false`")
    return text == "true"


async def read_upload(request: Request) -> Upload:
    """The file of the request's multipart body, checked; raises a Problem for anything else."""
    boundary = _boundary(request)
    limit = MAX_FILE_BYTES + MAX_FRAMING_BYTES
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large()
    collector = _Collector()
    callbacks = {name: getattr(collector, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
        "on_headers_finished", "on_part_data", "on_part_end", "on_end")}
    parser = MultipartParser(boundary, callbacks,  # type: ignore[arg-type]
                             max_header_size=MAX_HEADER_BYTES)
    received = 0
    try:
        stream = request.stream().__aiter__()
        while True:
            try:
                async with asyncio.timeout(CHUNK_TIMEOUT_SECONDS):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise Problem(408, "The request body did not arrive in time; send it again.",
                              title="Request timeout", slug="request-timeout") from None
            received += len(chunk)
            if received > limit:
                raise too_large()
            parser.write(chunk)
        parser.finalize()
        return _checked(collector)
    except MultipartParseError as exc:
        collector.close()
        raise Problem(400, f"The multipart/form-data body is malformed: {exc}") from None
    except ClientDisconnect:
        collector.close()
        raise Problem(400, "The client went away before the body was complete.") from None
    except BaseException:
        collector.close()
        raise


def _checked(collector: _Collector) -> Upload:
    if not collector.finished:
        raise Problem(400, "The multipart/form-data body ended before its closing boundary.")
    if collector.file is None:
        raise invalid("/file", "send the file in a part named `file`")
    if collector.size == 0:
        raise invalid("/file", "the file is empty")
    content_type = files.sniff(collector.head)
    if content_type is None:
        raise unsupported()
    try:
        filename = files.display_name(collector.raw_filename, content_type)
    except files.BadFileName as exc:
        raise invalid("/file/filename", str(exc)) from None
    collector.file.seek(0)
    return Upload(content=collector.file, filename=filename, content_type=content_type,
                  size=collector.size, sha256=collector.hash.hexdigest(),
                  confidential=_confidential(collector.confidential))
