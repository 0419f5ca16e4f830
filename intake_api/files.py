"""What a file is (from its bytes, never from its name or the client's header) and how its name
is shown."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

# The longest signature below; a file is sniffed once this many bytes arrived (or it ended).
SNIFF_BYTES = 12
MAX_NAME_CHARS = 255

EXTENSIONS = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png",
              "image/webp": "webp"}


def sniff(head: bytes) -> str | None:
    """The media type of an accepted kind of file from its first bytes, else ``None``."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= SNIFF_BYTES and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def could_still_be_accepted(head: bytes) -> bool:
    """False once the first bytes can no longer begin any accepted kind of file."""
    for signature in (b"%PDF-", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"):
        if head[:len(signature)] == signature[:len(head)]:
            return True
    # WebP: "RIFF", four bytes of size, "WEBP".
    return head[:4] == b"RIFF"[:len(head)] and head[8:12] == b"WEBP"[:max(0, len(head) - 8)]


class BadFileName(ValueError):
    pass


def display_name(raw: str | None, content_type: str) -> str:
    """The client's file name, safe to show: no directories, no control or format characters.

    A name that is too long is refused rather than cut, so a client never sees its file listed
    under a name it did not send.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Cc: control characters; Cf: format characters such as the right-to-left override that
    # makes "gpj.exe" display as "exe.jpg"; Cs: lone surrogates no database or browser can hold.
    name = "".join(" " if c.isspace() else c for c in name
                   if c.isspace() or unicodedata.category(c) not in {"Cc", "Cf", "Cs"})
    name = " ".join(name.split()).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        raise BadFileName(f"the file name may be at most {MAX_NAME_CHARS} characters")
    return name or f"attachment.{EXTENSIONS[content_type]}"


def content_disposition(filename: str) -> str:
    """``attachment`` with the RFC 6266 / RFC 8187 name and a plain ASCII fallback."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\%' else "_"
                       for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
