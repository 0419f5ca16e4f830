"""HTTP edge of Open311 GeoReport v2: ``services``, ``requests`` and ``requests/{id}``.

Errors are the specification's error lists in the request's format, never problem JSON. The
``api_key`` (a partner token) is read from the form or the query string and used only to
authenticate: it is never logged, echoed or stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData

from intake_api import repository, service
from intake_api.open311 import requests
from intake_api.open311.formats import Format, Open311Error, render, render_error
from intake_api.open311.services import SERVICES
from shared.auth import Actor, Role, authenticate
from shared.db import database_of
from shared.problems import Problem
from shared.ratelimit import rate_limiter_of
from shared.runtime import runtime_of
from shared.vocabulary import CASE_OPENING_KINDS

router = APIRouter(prefix="/open311/v2", tags=["open311"])

SUBMITTERS = {Role.partner, Role.assistant, Role.admin}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _format(fmt: str) -> Format:
    try:
        return Format(fmt)
    except ValueError:
        raise Open311Error(404, f"unknown format {fmt[:10]!r}: use .json or .xml") from None


def _fields(form: FormData) -> dict[str, str]:
    # A client may attach files to a multipart form; only text fields are read.
    return {key: value for key, value in form.multi_items() if isinstance(value, str)}


def _api_key(request: Request, form: Mapping[str, str]) -> str | None:
    key = form.get("api_key") or request.query_params.get("api_key")
    if key:
        return key
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def _caller(request: Request, form: Mapping[str, str]) -> Actor:
    key = _api_key(request, form)
    if key is None:
        raise Open311Error(403, "api_key was not provided")
    async with database_of(request).sessionmaker() as session:
        actor = await authenticate(session, key)
    if actor is None:
        raise Open311Error(403, "api_key is invalid or revoked")
    request.state.actor = actor  # the access log names the caller, as for a bearer token
    if actor.role not in SUBMITTERS:
        raise Open311Error(403, f"an api_key of role {actor.role.value} may not use Open311")
    try:
        rate_limiter_of(request).check(actor.name)
    except Problem as problem:
        raise Open311Error(429, problem.detail, headers=problem.headers) from None
    return actor


def _not_utf8(body: bytes) -> str | None:
    """The name of the first field of a URL-encoded form whose name or value is not UTF-8,
    or None. Starlette's parser would turn such bytes into U+FFFD: the citizen's text altered
    without a word."""
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        try:
            for raw in (name, value):
                unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return unquote_plus(name.decode("latin-1"), errors="replace")[:64]
    return None


def _multipart_not_utf8(content_type: str, body: bytes) -> str | None:
    """As ``_not_utf8``, for the text parts (those without a file name) of a multipart form,
    which Starlette's parser would read as Latin-1 instead."""
    document = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not isinstance(document, EmailMessage) or not document.is_multipart():
        return None  # not a multipart body: Starlette's parser refuses it
    for part in document.iter_parts():
        if part.get_param("filename", header="content-disposition") is not None:
            continue
        data = part.get_payload(decode=True)
        try:
            if isinstance(data, bytes):
                data.decode("utf-8")
        except UnicodeDecodeError:
            return str(part.get_param("name", "", header="content-disposition"))[:64]
    return None


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media not in FORM_TYPES:
        raise Open311Error(400, "send the request as application/x-www-form-urlencoded")
    # Read once: request.form() parses the body kept here.
    body = await request.body()
    field = (_not_utf8(body) if media == FORM_TYPES[0]
             else _multipart_not_utf8(content_type, body))
    if field is not None:
        raise Open311Error(400, f"{field}: is not UTF-8 text (send the UTF-8 bytes of the "
                                "text)")
    try:
        return _fields(await request.form(max_files=4, max_fields=200))
    except Exception as exc:  # starlette's parser errors: a malformed body, not ours
        raise Open311Error(400, f"the form is malformed: {type(exc).__name__}") from None


def _answer_errors(fmt: str, error: Open311Error) -> Response:
    try:
        chosen = Format(fmt)
    except ValueError:
        chosen = Format.json
    return render_error(chosen, error)


def _from_problem(problem: Problem) -> Open311Error:
    status = 400 if problem.status == 422 else problem.status
    return Open311Error(status, problem.detail, headers=problem.headers)


FORMATS: dict[str, Any] = {"content": {"application/json": {}, "text/xml": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Error list: missing or invalid fields", **FORMATS},
    403: {"description": "Error list: api_key missing, invalid or not a partner's", **FORMATS},
    404: {"description": "Error list: unknown format or request", **FORMATS},
    429: {"description": "Error list: over the rate limit", **FORMATS},
}
# Answered by the common guards before the endpoint, as error lists too (open311/errors.py).
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"description": "Error list: the body did not arrive in time", **FORMATS},
    413: {"description": "Error list: body over 256 KiB", **FORMATS},
    415: {"description": "Error list: the body is not a form", **FORMATS},
}


@router.get("/services.{fmt}", summary="Open311: the services (one per substance)",
            responses={200: {"description": "Service list", **FORMATS}, **ERRORS})
async def list_services(fmt: str) -> Response:
    try:
        chosen = _format(fmt)
    except Open311Error as error:
        return _answer_errors(fmt, error)
    records = [{"service_code": s.code, "service_name": s.name, "description": s.description,
                "metadata": False, "type": "realtime", "keywords": s.keywords,
                "group": s.group} for s in SERVICES]
    return render(chosen, "services", "service", records)


POST_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["service_code", "description"],
        "properties": {name: {"type": "string"} for name in (
            "api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string",
            "address_id", "email", "device_id", "account_id", "first_name", "last_name",
            "phone", "description", "media_url", "attribute[agency]",
            "attribute[agency_name]")},
    }},
}}}


@router.post("/requests.{fmt}", status_code=201, openapi_extra=POST_BODY,
             summary="Open311: report (creates a complaint of kind report, channel website)",
             responses={201: {"description": "The new request's id", **FORMATS}, **ERRORS,
                        **BODY_ERRORS})
async def create_request(fmt: str, request: Request) -> Response:
    try:
        chosen = _format(fmt)
        form = await _form(request)
        actor = await _caller(request, form)
        new = requests.read_new_request(form)
        runtime = runtime_of(request)
        async with database_of(request).transaction() as session:
            if not new.agency_named:
                known = await repository.agency_name(session,
                                                     new.complaint.reported_agency.code)
                new = new.naming_agency(known) if known is not None else new
            created = await service.submit(session, actor, new.complaint,
                                           now=runtime.clock.now(), zone=runtime.settings.zone)
            complaint = await repository.get(session, created.id)
            assert complaint is not None
            session.add(new.details(complaint))
            await session.flush()
    except Open311Error as error:
        return _answer_errors(fmt, error)
    except Problem as problem:
        return _answer_errors(fmt, _from_problem(problem))
    record = {"service_request_id": created.tracking_number,
              "service_notice": requests.SERVICE_NOTICE, "account_id": None}
    return render(chosen, "service_requests", "request", [record], status=201)


async def _query(request: Request, fmt: str, params: Mapping[str, str], *,
                 single: bool = False) -> Response:
    chosen = _format(fmt)
    actor = await _caller(request, {})
    now = runtime_of(request).clock.now()
    query = requests.read_query(params, now=now)
    closed = None if len(set(query.statuses)) != 1 else query.statuses[0] == "closed"
    async with database_of(request).transaction() as session:
        rows = await repository.open311_requests(
            session, submitted_by=actor.name if actor.role is Role.partner else None,
            kinds=sorted(CASE_OPENING_KINDS), tracking_numbers=query.ids,
            substances=query.codes, start=query.start, end=query.end, closed=closed,
            limit=requests.MAX_RESULTS)
    if single and not rows:
        raise Open311Error(404, f"service_request_id {query.ids[0][:40]!r} was not found")
    records = [requests.as_record(complaint, details) for complaint, details in rows]
    return render(chosen, "service_requests", "request", records)


@router.get("/requests.{fmt}", summary="Open311: the caller's requests, newest first",
            description="Filters: `service_request_id` and `service_code` (comma-separated), "
                        "`start_date`, `end_date` (W3C date-times; 90 days back by default), "
                        "`status` (open, closed). At most 1,000.",
            responses={200: {"description": "Service requests", **FORMATS}, **ERRORS})
async def list_requests(fmt: str, request: Request) -> Response:
    try:
        return await _query(request, fmt, request.query_params)
    except Open311Error as error:
        return _answer_errors(fmt, error)


@router.get("/requests/{service_request_id}.{fmt}", summary="Open311: one request",
            responses={200: {"description": "A list of one service request", **FORMATS},
                       **ERRORS})
async def get_request(service_request_id: str, fmt: str, request: Request) -> Response:
    try:
        return await _query(request, fmt, {"service_request_id": service_request_id[:64]},
                            single=True)
    except Open311Error as error:
        return _answer_errors(fmt, error)
