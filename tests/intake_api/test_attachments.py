"""Evidence uploads and downloads against the real database, as an HTTP client sends them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

from shared.db import asyncpg_dsn
from tests.support import (
    BackingServices,
    ServiceProcess,
    bearer,
    complaint,
    eventually,
    query,
    running_app,
)

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(64)
MIB = 1024 * 1024
AGENCY = "pln-uiw-babel"


def dsn(services: BackingServices) -> str:
    return asyncpg_dsn(services.database_url)


async def stored(services: BackingServices) -> tuple[int, int, list[dict[str, Any]]]:
    """Attachment rows, chunk rows and the attachment events in the outbox."""
    counted = await query(services.database_url,
                          "SELECT (SELECT count(*) FROM intake.attachments),"
                          " (SELECT count(*) FROM intake.attachment_chunks)")
    events = await query(services.database_url,
                         "SELECT envelope FROM intake.outbox WHERE envelope->>'type' LIKE "
                         "'%complaint.attachment_added.v1' ORDER BY id")
    rows, chunks = counted[0]
    return int(rows), int(chunks), [json.loads(e["envelope"]) for e in events]


async def new_complaint(client: httpx.AsyncClient, token: str, **overrides: Any) -> str:
    response = await client.post("/v1/complaints", json=complaint(**overrides),
                                 headers=bearer(token))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def upload(client: httpx.AsyncClient, token: str, complaint_id: str, name: str,
                 content: bytes, media: str = "application/octet-stream",
                 **fields: str) -> httpx.Response:
    return await client.post(f"/v1/complaints/{complaint_id}/attachments",
                             files={"file": (name, content, media)}, data=fields,
                             headers=bearer(token))


async def test_a_pdf_is_stored_listed_and_downloaded_as_sent(services: BackingServices) -> None:
    partner = await services.token("partner", "posko-pln")
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        response = await upload(client, partner, complaint_id, "surat keluhan €.pdf", PDF,
                                "text/plain")
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == (
            f"/v1/complaints/{complaint_id}/attachments/{body['id']}")
        assert body["filename"] == "surat keluhan €.pdf"
        assert body["content_type"] == "application/pdf"  # from the bytes, not the header
        assert body["size"] == len(PDF)
        assert body["sha256"] == hashlib.sha256(PDF).hexdigest()
        assert body["confidential"] is False
        assert body["uploaded_by"] == "posko-pln"
        assert body["uploaded_at"].endswith("Z")

        listed = await client.get(f"/v1/complaints/{complaint_id}/attachments",
                                  headers=bearer(partner))
        assert listed.json() == {"items": [body], "next_cursor": None}

        download = await client.get(response.headers["location"], headers=bearer(partner))
        assert download.status_code == 200
        assert download.content == PDF
        assert download.headers["content-type"] == "application/pdf"
        assert download.headers["content-length"] == str(len(PDF))
        assert download.headers["x-content-type-options"] == "nosniff"
        assert download.headers["etag"] == f'"{body["sha256"]}"'
        disposition = download.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        encoded = disposition.split("filename*=UTF-8''")[1]
        assert unquote(encoded) == "surat keluhan €.pdf"

        unchanged = await client.get(response.headers["location"],
                                     headers={**bearer(partner),
                                              "If-None-Match": download.headers["etag"]})
        assert unchanged.status_code == 304
        assert unchanged.content == b""

    rows, chunks, events = await stored(services)
    assert (rows, chunks, len(events)) == (1, 1, 1)
    event = events[0]
    assert event["subject"] == complaint_id
    assert event["data"]["attachment_id"] == body["id"]
    assert event["data"]["sha256"] == body["sha256"]
    assert event["data"]["size"] == len(PDF)
    assert event["data"]["content_type"] == "application/pdf"
    assert event["data"]["confidential"] is False
    # Metadata only: the bytes never travel on the event stream.
    assert "JVBER" not in json.dumps(event)  # base64 of "%PDF"
    assert "%PDF" not in json.dumps(event)


async def test_the_type_comes_from_the_bytes(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        for name, content, expected in [("foto.pdf", PNG, "image/png"),
                                        ("kwitansi", JPEG, "image/jpeg"),
                                        ("bukti.exe", WEBP, "image/webp")]:
            response = await upload(client, partner, complaint_id, name, content, "image/gif")
            assert response.status_code == 201, response.text
            assert response.json()["content_type"] == expected
            assert response.json()["filename"] == name

        for name, content in [("foto.png", EXE), ("surat.pdf", b"<html><script>x</script>"),
                              ("tiny.png", b"\x89P"), ("wave.webp", b"RIFF\0\0\0\0WAVEfmt ")]:
            refused = await upload(client, partner, complaint_id, name, content, "image/png")
            assert refused.status_code == 415, (name, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
    rows, chunks, events = await stored(services)
    assert (rows, chunks, len(events)) == (3, 3, 3)


async def test_bad_uploads_are_problems_and_store_nothing(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        path = f"/v1/complaints/{complaint_id}/attachments"
        headers = bearer(partner)
        answers = {
            "missing file": await client.post(path, data={"confidential": "true"},
                                              files={"other": ("a.pdf", PDF, "application/pdf")},
                                              headers=headers),
            "only a field": await client.post(
                path, content=b"--b\r\nContent-Disposition: form-data; name=\"confidential\""
                              b"\r\n\r\ntrue\r\n--b--\r\n",
                headers={**headers, "content-type": "multipart/form-data; boundary=b"}),
            "two files": await client.post(
                path, files=[("file", ("a.pdf", PDF, "application/pdf")),
                             ("file", ("b.pdf", PDF, "application/pdf"))], headers=headers),
            "zero bytes": await upload(client, partner, complaint_id, "empty.pdf", b""),
            "10,000-char name": await upload(client, partner, complaint_id,
                                             "a" * 10_000 + ".pdf", PDF),
            "confidential=maybe": await upload(client, partner, complaint_id, "a.pdf", PDF,
                                               confidential="maybe"),
            "JSON body": await client.post(path, json={"file": "JVBERi0="}, headers=headers),
            "no boundary": await client.post(
                path, content=PDF, headers={**headers, "content-type": "multipart/form-data"}),
            "cut short": await client.post(
                path, content=b"--b\r\nContent-Disposition: form-data; name=\"file\"; "
                              b"filename=\"a.pdf\"\r\n\r\n" + PDF,
                headers={**headers, "content-type": "multipart/form-data; boundary=b"}),
        }
        for what, response in answers.items():
            assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
            assert response.headers["content-type"] == "application/problem+json", what
            problem = response.json()
            assert problem["status"] == response.status_code, what
            assert problem["detail"], what
        assert answers["two files"].status_code == 422
        assert answers["zero bytes"].status_code == 422
        assert answers["10,000-char name"].status_code == 422
        assert answers["10,000-char name"].json()["errors"][0]["field"] == "/file/filename"
        assert answers["missing file"].status_code == 422
        assert answers["JSON body"].status_code == 415
    assert await stored(services) == (0, 0, [])


def raw_multipart(filename: bytes, content: bytes) -> bytes:
    """A body as a client that does not escape its file names sends it."""
    return (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename
            + b"\"\r\nContent-Type: application/pdf\r\n\r\n" + content + b"\r\n--b--\r\n")


async def test_file_names_are_for_display_only(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        for sent, shown in [("../../etc/\u202epasswd.pdf", "passwd.pdf"),
                            ("C:\\Users\\siti\\Desktop\\bukti\x07\t1.pdf", "bukti 1.pdf"),
                            ("  ..  ", "attachment.pdf"),
                            ("laporan akhir; ok=1 €.pdf", "laporan akhir; ok=1 €.pdf")]:
            response = await client.post(
                f"/v1/complaints/{complaint_id}/attachments",
                content=raw_multipart(sent.encode(), PDF),
                headers={**bearer(partner), "content-type": "multipart/form-data; boundary=b"})
            assert response.status_code == 201, response.text
            assert response.json()["filename"] == shown
            download = await client.get(response.headers["location"], headers=bearer(partner))
            disposition = download.headers["content-disposition"]
            assert unquote(disposition.split("filename*=UTF-8''")[1]) == shown
            assert disposition.count('"') == 2  # the quoted fallback never breaks out


async def test_ten_mib_is_accepted_and_stored_whole(services: BackingServices) -> None:
    partner = await services.token("partner")
    content = PDF + bytes(range(256)) * ((10 * MIB - len(PDF)) // 256)
    content += b"\n" * (10 * MIB - len(content))
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        response = await upload(client, partner, complaint_id, "scan.pdf", content)
        assert response.status_code == 201, response.text
        assert response.json()["size"] == 10 * MIB
        download = await client.get(response.headers["location"], headers=bearer(partner))
        assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(content).hexdigest()
        one_more = await upload(client, partner, complaint_id, "scan.pdf", content + b"\n")
        assert one_more.status_code == 413
    rows, chunks, _ = await stored(services)
    assert (rows, chunks) == (1, 10)


async def test_a_200_mib_upload_is_refused_while_streaming_in_flat_memory(
    services: BackingServices,
) -> None:
    partner = await services.token("partner")
    offered = 200 * MIB
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        head = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n"
                b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n")
        sent += len(head)
        yield head
        for _ in range(offered // MIB):
            sent += MIB
            yield b"0" * MIB  # a fresh piece each time: the client keeps nothing
        yield b"\r\n--x--\r\n"

    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        tracemalloc.start()
        try:
            response = await client.post(
                f"/v1/complaints/{complaint_id}/attachments", content=body(),
                headers={**bearer(partner), "content-type": "multipart/form-data; boundary=x"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        # Refused at the limit: the server stopped reading a little past 10 MiB of 200 ...
        assert sent < 12 * MIB
        # ... and never held more than a small part of it (the spool keeps 1 MiB in memory).
        print(f"\n200 MiB offered: {sent / MIB:.1f} MiB read, peak {peak / MIB:.1f} MiB")
        assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"

        declared = await client.post(
            f"/v1/complaints/{complaint_id}/attachments", content=b"",
            headers={**bearer(partner), "content-type": "multipart/form-data; boundary=x",
                     "content-length": str(offered)})
        assert declared.status_code == 413
    assert await stored(services) == (0, 0, [])


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_a_real_server_refuses_a_200_mib_chunked_upload_without_growing(
    services: BackingServices, tmp_path: Path,
) -> None:
    partner = await services.token("partner")
    server = ServiceProcess("all", services.env(), tmp_path / "server.log").start()
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\""
               b"\r\n\r\n%PDF-1.7\n")
        for _ in range(200):
            sent += MIB
            yield b"0" * MIB
        yield b"\r\n--x--\r\n"

    try:
        await server.wait_ready()
        assert server.process is not None
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            complaint_id = await new_complaint(client, partner)
            path = f"/v1/complaints/{complaint_id}/attachments"
            warm = await upload(client, partner, complaint_id, "a.pdf", PDF)
            assert warm.status_code == 201
            before = peak_rss(server.process.pid)
            response = await client.post(path, content=body(), headers={
                **bearer(partner), "content-type": "multipart/form-data; boundary=x"})
            grown = peak_rss(server.process.pid) - before
            assert response.status_code == 413, server.log_tail()
            assert response.headers["content-type"] == "application/problem+json"
            # Chunked, with no Content-Length: the server read on to the end without keeping
            # any of it (a client reliably gets the 413 only if the connection is not reset
            # under it), and its process barely grew.
            assert sent == 200 * MIB
            print(f"\n200 MiB chunked upload: 413, server peak RSS grew {grown / MIB:.1f} MiB")
            assert grown < 32 * MIB, f"peak RSS grew {grown / MIB:.1f} MiB"
            after = await client.get(path, headers=bearer(partner))
            assert len(after.json()["items"]) == 1
    finally:
        server.stop()
    rows, _, events = await stored(services)
    assert (rows, len(events)) == (1, 1)


async def test_at_most_twenty_per_complaint_even_when_racing(services: BackingServices) -> None:
    partner = await services.token("partner")
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        for n in range(17):
            response = await upload(client, partner, complaint_id, f"{n}.png", PNG)
            assert response.status_code == 201
        racing = await asyncio.gather(*[upload(client, partner, complaint_id, f"r{n}.png", PNG)
                                        for n in range(6)])
        assert sorted(r.status_code for r in racing) == [201, 201, 201, 409, 409, 409]
        full = await upload(client, partner, complaint_id, "21.png", PNG)
        assert full.status_code == 409
        assert "20" in full.json()["detail"]
        listed = await client.get(f"/v1/complaints/{complaint_id}/attachments",
                                  headers=bearer(partner))
        assert len(listed.json()["items"]) == 20
        assert listed.json()["next_cursor"] is None
        # The list pages like every other (API.md conventions): limit and cursor.
        url = f"/v1/complaints/{complaint_id}/attachments"
        paged: list[dict[str, object]] = []
        cursor = None
        for _ in range(5):
            page = await client.get(url, params={"limit": 6, **({"cursor": cursor} if cursor
                                                               else {})},
                                    headers=bearer(partner))
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) == min(6, 20 - len(paged))
            paged += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert paged == listed.json()["items"]
        for bad in ("limit=0", "limit=201", "limit=x", "cursor=zzz", "cursor=%FF"):
            refused = await client.get(f"{url}?{bad}", headers=bearer(partner))
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
    rows, _, events = await stored(services)
    assert (rows, len(events)) == (20, 20)


async def test_who_may_add_and_read(services: BackingServices) -> None:
    partner = await services.token("partner", "posko-pln")
    other_partner = await services.token("partner", "lapor")
    assistant = await services.token("assistant")
    analyst = await services.token("analyst")
    liaison = await services.token("liaison", "narahubung.pln", agency=AGENCY)
    other_liaison = await services.token("liaison", "narahubung.bpn", agency="bpn-babel")
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        consultation = await new_complaint(client, partner, kind="consultation")
        path = f"/v1/complaints/{complaint_id}/attachments"
        public = (await upload(client, partner, complaint_id, "a.pdf", PDF)).json()
        secret = (await upload(client, assistant, complaint_id, "ktp.jpg", JPEG,
                               confidential="true")).json()
        assert secret["confidential"] is True
        assert (await upload(client, partner, consultation, "c.pdf", PDF)).status_code == 201

        async def seen_by(token: str) -> set[str]:
            listed = await client.get(path, headers=bearer(token))
            assert listed.status_code == 200, listed.text
            return {item["id"] for item in listed.json()["items"]}

        assert await seen_by(partner) == {public["id"], secret["id"]}
        assert await seen_by(assistant) == {public["id"], secret["id"]}
        assert await seen_by(liaison) == {public["id"]}
        for token, status in [(liaison, 200), (other_liaison, 404), (other_partner, 404)]:
            response = await client.get(f"{path}/{public['id']}", headers=bearer(token))
            assert response.status_code == status
        for token in (liaison, other_liaison, other_partner):
            response = await client.get(f"{path}/{secret['id']}", headers=bearer(token))
            assert response.status_code == 404
            assert response.json()["detail"] != ""
        for token in (other_liaison, other_partner):
            assert (await client.get(path, headers=bearer(token))).status_code == 404
        # A consultation opens no case: no liaison answers for it.
        consulted = await client.get(f"/v1/complaints/{consultation}/attachments",
                                     headers=bearer(liaison))
        assert consulted.status_code == 404

        assert (await upload(client, other_partner, complaint_id, "x.pdf", PDF)).status_code \
            == 404
        assert (await upload(client, liaison, complaint_id, "x.pdf", PDF)).status_code == 403
        assert (await upload(client, analyst, complaint_id, "x.pdf", PDF)).status_code == 403
        assert (await client.get(path, headers=bearer(analyst))).status_code == 403
        assert (await client.get(path)).status_code == 401
        unknown = await client.get("/v1/complaints/00000000-0000-0000-0000-000000000000/"
                                   "attachments", headers=bearer(assistant))
        assert unknown.status_code == 404
        missing = await client.get(f"{path}/{complaint_id}", headers=bearer(assistant))
        assert missing.status_code == 404
    rows, _, events = await stored(services)
    assert (rows, len(events)) == (3, 3)


async def test_attachment_events_leave_cases_and_figures_alone(services: BackingServices) -> None:
    partner = await services.token("partner")
    assistant = await services.token("assistant")
    async with running_app(services) as client:
        complaint_id = await new_complaint(client, partner)
        assert (await upload(client, partner, complaint_id, "a.pdf", PDF)).status_code == 201
        second = await new_complaint(client, partner)

        async def both_consumers_passed_it() -> None:
            case = await client.get(f"/v1/cases/{second}", headers=bearer(assistant))
            assert case.status_code == 200
            [(contacts, dead)] = await query(
                services.database_url,
                "SELECT (SELECT count(*) FROM metrics.contacts),"
                " (SELECT count(*) FROM cases.dead_letters)"
                " + (SELECT count(*) FROM metrics.dead_letters)")
            assert contacts == 2
            assert dead == 0

        await eventually(both_consumers_passed_it)
