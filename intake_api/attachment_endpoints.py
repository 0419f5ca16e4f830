"""HTTP edge of evidence uploads and downloads.

An upload does not hold a database connection while its body arrives: the complaint is checked in
one short transaction, the body is read, and the attachment is stored in a second one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from intake_api import attachments
from intake_api.files import EXTENSIONS, content_disposition
from intake_api.schemas import AttachmentOut, AttachmentPage
from intake_api.storage import StoreDep
from intake_api.upload import MAX_FILE_BYTES, read_upload
from shared.auth import Actor, Role, require
from shared.db import DatabaseDep, SessionDep
from shared.pagination import PagingDep
from shared.problems import documented, parse_id
from shared.runtime import ClockDep

router = APIRouter(prefix="/v1/complaints/{complaint_id}/attachments", tags=["attachments"])

IdPath = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]
Uploader = Annotated[Actor, Depends(require(Role.partner, Role.assistant))]
Reader = Annotated[Actor, Depends(require(Role.partner, Role.assistant, Role.liaison))]


UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "PDF, JPEG, PNG or WebP (decided from the bytes), at most "
                                    f"{MAX_FILE_BYTES} bytes."},
            "confidential": {"type": "string", "enum": ["true", "false"],
                             "description": "`true` hides the file from liaison officers."},
        },
    }},
}}}


@router.post("", status_code=201, response_model=AttachmentOut, openapi_extra=UPLOAD_BODY,
             summary="Attach evidence to a complaint (multipart, one part `file`)",
             responses=documented(saying={
                 409: "The complaint already has 20 attachments",
                 413: "The file is over 10 MiB (refused while it streams)",
                 415: "Not multipart/form-data, or the file is not a PDF, JPEG, PNG or WebP",
                 422: "No `file` part, two of them, an empty file, an unusable name",
             }))
async def add_attachment(complaint_id: IdPath, request: Request, actor: Uploader,
                         store: StoreDep, database: DatabaseDep,
                         clock: ClockDep) -> JSONResponse:
    complaint = parse_id(complaint_id, "complaint")
    async with database.transaction() as session:
        await attachments.check_room(session, actor, complaint)
    upload = await read_upload(request)
    try:
        async with database.transaction() as session:
            out = await attachments.add(session, store, actor, complaint, upload,
                                        now=clock.now())
    finally:
        upload.close()
    return JSONResponse(out.model_dump(mode="json"), status_code=201,
                        headers={"Location": f"/v1/complaints/{complaint}/attachments/{out.id}"})


@router.get("", response_model=AttachmentPage, summary="A complaint's attachments, oldest first",
            description="Liaison officers see only attachments not marked confidential.")
async def list_attachments(complaint_id: IdPath, session: SessionDep, actor: Reader,
                           paging: PagingDep) -> AttachmentPage:
    found = await attachments.visible(session, actor, parse_id(complaint_id, "complaint"),
                                      after_seq=paging.after(), limit=paging.fetch)
    shown, next_cursor = paging.page(found, key=lambda attachment: attachment.seq)
    return AttachmentPage(items=[attachments.to_out(a) for a in shown], next_cursor=next_cursor)


BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get("/{attachment_id}", response_class=Response,
            summary="The bytes of one attachment (always as a download)",
            responses={200: {"description": "The file", "content": {
                           media: BINARY for media in EXTENSIONS}},
                       304: {"description": "Unchanged (If-None-Match matched the ETag)"}})
async def download_attachment(
    complaint_id: IdPath, attachment_id: IdPath, session: SessionDep, actor: Reader,
    store: StoreDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=1024)] = None,
) -> Response:
    attachment = await attachments.one_visible(session, actor,
                                               parse_id(complaint_id, "complaint"),
                                               parse_id(attachment_id, "attachment"))
    etag = f'"{attachment.sha256}"'
    headers = {"ETag": etag, "X-Content-Type-Options": "nosniff",
               "Cache-Control": "private, no-cache"}
    if if_none_match is not None and _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    headers.update({"Content-Disposition": content_disposition(attachment.filename),
                    "Content-Length": str(attachment.size)})
    return StreamingResponse(store.read(attachment.id), media_type=attachment.content_type,
                             headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison for If-None-Match: ``*`` or any listed tag, ``W/`` or not."""
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags
