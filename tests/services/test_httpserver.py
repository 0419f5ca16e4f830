"""The server's own limits, tried from outside with raw sockets against a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from services.httpserver import MAX_HEAD_BYTES, Server, server_config
from shared.access_log import UNMATCHED, AccessLog, RequestMetrics
from shared.admission import Admission
from shared.middleware import BodyGuard
from shared.settings import Settings
from tests.support import BackingServices, ServiceProcess


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body and answers its length: the app has no limits of its own."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"received": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def served(app: ASGIApp = echo_app, options: dict[str, Any] | None = None,
           **settings: Any) -> Iterator[tuple[str, int]]:
    """The app behind the server ``aduan serve`` uses, in a thread, on a free port
    (``options``: uvicorn's own, such as TLS)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    config = server_config(app, host="127.0.0.1", port=address[1],
                           settings=Settings(**settings), lifespan="off",
                           timeout_graceful_shutdown=1, **(options or {}))
    server = Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield address
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


def read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_head_and_body(conn: socket.socket) -> tuple[bytes, bytes]:
    """One response (head, body as sent) from a connection that stays open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = conn.recv(65536)
        assert chunk, f"closed after {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "closed within the body"
        body += chunk
    return head, body


def read_response(conn: socket.socket) -> tuple[bytes, dict[str, Any]]:
    """One response (head, JSON body) from a connection that stays open."""
    head, body = read_head_and_body(conn)
    return head, json.loads(body)


def status_and_body(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else {}


def test_headers_over_16_kib_are_431() -> None:
    with served() as address, closing(connect(address)) as conn:
        conn.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1024)
                     + b"\r\n\r\n")
        status, problem = status_and_body(read_all(conn))
    assert status == 431
    assert problem["status"] == 431
    assert str(MAX_HEAD_BYTES) in problem["detail"]


def test_a_100_mib_header_is_cut_off_and_the_server_keeps_answering() -> None:
    chunk = b"a" * (1024 * 1024)
    sent = 0
    with served() as address:
        with closing(connect(address)) as conn:
            conn.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: ")
            try:
                while sent < 100 * len(chunk):
                    conn.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        # The server stopped reading right after the bound: what was sent is what fits in the
        # sockets' buffers, not 100 MiB.
        assert sent < 32 * len(chunk)
        answer = httpx.post(f"http://{address[0]}:{address[1]}/", content=b"abc", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"received": 3}


def test_headers_within_the_bound_and_a_large_body_in_one_packet_are_served() -> None:
    body = b"b" * (200 * 1024)
    head = (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            b"X-Pad: " + b"p" * (MAX_HEAD_BYTES - 200) + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
    assert len(head) <= MAX_HEAD_BYTES
    with served() as address, closing(connect(address)) as conn:
        conn.sendall(head + body)
        status, answer = status_and_body(read_all(conn))
    assert status == 200
    assert answer == {"received": len(body)}


def test_headers_that_stop_arriving_are_408_at_the_deadline() -> None:
    with served(request_deadline_seconds=1) as address, closing(connect(address)) as conn:
        conn.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n")
        started = time.monotonic()
        status, problem = status_and_body(read_all(conn))
        waited = time.monotonic() - started
    assert status == 408
    assert problem["title"] == "Request timeout"
    assert waited < 8  # closed by the deadline, not by the socket's own 10 s timeout


def test_a_dribbled_body_is_cut_off_at_the_deadline() -> None:
    with served(request_deadline_seconds=1) as address, closing(connect(address)) as conn:
        conn.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        dripped = 0
        try:
            for _ in range(40):  # one byte every 0.2 s would take 200 s for the whole body
                conn.sendall(b"{")
                dripped += 1
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_all(conn)
    assert dripped < 40
    if raw:  # the 408 reaches the client unless the connection was reset under it
        assert status_and_body(raw)[0] == 408


# Requests httptools refuses to parse, each as a client could send it.
UNPARSABLE = {
    "garbage request line": b"HELLO THERE\r\n\r\n",
    "raw non-ASCII in the target": "GET /v1/metrics/summary?period=\u0662\u0660\u0662\u0662 "
                                   "HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
    "bad Content-Length": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
    "Content-Length and Transfer-Encoding": (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
}


def assert_unparsable_is_a_400_problem(address: tuple[str, int]) -> None:
    for what, request in UNPARSABLE.items():
        with closing(connect(address)) as conn:
            conn.sendall(request)
            raw = read_all(conn)
        head = raw.partition(b"\r\n\r\n")[0].lower()
        assert b"\r\ncontent-type: application/problem+json\r\n" in head + b"\r\n", (what, raw)
        status, problem = status_and_body(raw)
        assert status == 400, (what, raw)
        assert problem["status"] == 400
        assert problem["type"].endswith("/malformed-request")


def test_requests_the_parser_refuses_are_400_problems() -> None:
    with served() as address:
        assert_unparsable_is_a_400_problem(address)
        # And the server goes on answering.
        assert httpx.post(f"http://{address[0]}:{address[1]}/", content=b"ok").status_code == 200


def test_a_body_cut_off_at_the_deadline_is_logged_and_counted_as_408(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aduan.access")
    registry = CollectorRegistry()
    app = AccessLog(BodyGuard(echo_app), metrics=RequestMetrics(registry))
    with served(app, request_deadline_seconds=1) as address, closing(connect(address)) as conn:
        conn.sendall(post("/v1/complaints", b'{"summary": "slow"}')[:-4])
        status, problem = status_and_body(read_all(conn))
        assert status == 408
        assert problem["status"] == 408
        deadline = time.monotonic() + 5
        while not [r for r in caplog.records if r.name == "aduan.access"]:
            assert time.monotonic() < deadline, "no access-log line"
            time.sleep(0.02)
    logged = [r for r in caplog.records if r.name == "aduan.access"]
    assert [(r.status, r.route) for r in logged] == [(408, UNMATCHED)]  # type: ignore[attr-defined]
    labels = {"method": "POST", "route": UNMATCHED}
    assert registry.get_sample_value("aduan_http_requests_total", {**labels, "status": "408"}) == 1
    assert registry.get_sample_value("aduan_http_requests_total",
                                     {**labels, "status": "500"}) is None


def test_dribbled_headers_and_silent_connections_are_closed() -> None:
    with (served(request_deadline_seconds=1) as address, closing(connect(address)) as silent,
          closing(connect(address)) as dribbling):
        sent = b""
        for byte in b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 40:
            try:
                dribbling.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += bytes([byte])
            time.sleep(0.1)
        assert len(sent) < 60
        assert status_and_body(read_all(silent))[0] == 408


class BusyLoop:
    """An app whose every answer says how many slow turns its event loop has left; asked for
    ``/busy``, it makes each of the next ``TURNS`` turns take ``TURN_SECONDS`` (a callback that
    blocks, then runs again on the next turn), as a loop busy with other requests does."""

    TURNS = 150
    TURN_SECONDS = 0.02

    def __init__(self) -> None:
        self.left = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/busy":
            self.left = self.TURNS
            asyncio.get_running_loop().call_soon(self._turn)
        body = json.dumps({"turns_left": self.left}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _turn(self) -> None:
        time.sleep(self.TURN_SECONDS)
        self.left -= 1
        if self.left > 0:
            asyncio.get_running_loop().call_soon(self._turn)


def test_connections_waiting_to_be_accepted_are_taken_all_at_once_by_a_busy_loop() -> None:
    app = BusyLoop()
    with served(app) as address, closing(connect(address)) as first:
        first.sendall(b"GET /busy HTTP/1.1\r\nHost: a\r\n\r\n")
        read_response(first)
        conns, sent_at = [], []
        try:
            for _ in range(40):
                conn = connect(address)
                conns.append(conn)
                conn.sendall(b"GET /n HTTP/1.1\r\nHost: a\r\n\r\n")
                sent_at.append(app.left)
            answered_at = [read_response(conn)[1]["turns_left"] for conn in conns]
        finally:
            app.left = 0
            for conn in conns:
                conn.close()
    assert all(left > 0 for left in answered_at), "the loop was not busy all along"
    # Accepted one per turn, the 40th connection would wait 40 turns before it is even read.
    turns_waited = [sent - answered for sent, answered in zip(sent_at, answered_at, strict=True)]
    assert max(turns_waited) <= 15, turns_waited


def test_connections_taken_while_the_loop_is_busy_speak_tls_when_the_server_does(
        tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False
    app = BusyLoop()
    options = {"ssl_keyfile": str(key), "ssl_certfile": str(cert)}
    with served(app, options) as address:
        with closing(tls.wrap_socket(connect(address))) as first:
            first.sendall(b"GET /busy HTTP/1.1\r\nHost: a\r\n\r\n")
            read_response(first)
        plain = [connect(address) for _ in range(10)]  # queued while the loop is busy
        try:
            answers = []
            for conn in plain:
                with closing(tls.wrap_socket(conn)) as secured:
                    secured.sendall(b"GET /n HTTP/1.1\r\nHost: a\r\n\r\n")
                    answers.append(read_response(secured))
        finally:
            app.left = 0
            for conn in plain:
                conn.close()
    assert [head.split(b" ", 2)[1] for head, _ in answers] == [b"200"] * 10
    assert any(body["turns_left"] > 0 for _, body in answers), "the loop was not busy"


def test_connections_per_client_address_are_bounded() -> None:
    with served(max_connections_per_client=3, request_deadline_seconds=30) as address:
        held = [connect(address) for _ in range(3)]
        try:
            with closing(connect(address)) as extra:
                status, problem = status_and_body(read_all(extra))
            assert status == 429
            assert "3 connections" in problem["detail"]
            held.pop().close()
            time.sleep(0.2)  # the server sees the close
            answer = httpx.get(f"http://{address[0]}:{address[1]}/", timeout=5)
            assert answer.status_code == 200
        finally:
            for conn in held:
                conn.close()


class HeldApp:
    """``/hold`` answers once released; every other path at once. Records what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.release = threading.Event()

    def hold(self, connection: socket.socket) -> None:
        """Sends ``/hold`` on ``connection``; returns once it reached the app (its slot taken)."""
        connection.sendall(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
        deadline = time.monotonic() + 10
        while "/hold" not in self.seen:
            assert time.monotonic() < deadline, "the first request never reached the app"
            time.sleep(0.01)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
            if scope["path"] == "/hold":
                await asyncio.to_thread(self.release.wait, 30)
        await echo_app(scope, receive, send)


def post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_request_admission_would_refuse_is_answered_503_before_the_app_and_keeps_its_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aduan.access")
    held = HeldApp()
    admission = Admission(held, limit=1, queue=0, wait=30)
    registry = CollectorRegistry()
    app = AccessLog(admission, metrics=RequestMetrics(registry))
    with (served(app) as address, closing(connect(address)) as holding,
          closing(connect(address)) as other):
        held.hold(holding)  # the one slot is taken

        other.sendall(post("/v1/complaints", b'{"summary": "' + b"x" * 4000 + b'"}'))
        head, problem = read_response(other)
        assert head.startswith(b"HTTP/1.1 503 ")
        headers = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip()
                   for line in head.split(b"\r\n")[1:]}
        assert headers[b"content-type"] == b"application/problem+json"
        assert headers[b"retry-after"] == b"30"
        assert b"connection" not in headers  # kept open for the client's next request
        assert problem["status"] == 503
        assert problem["type"].endswith("/overloaded")
        assert held.seen == ["/hold"]  # refused before the app, admission included

        # A client that asked to close is answered so, and the connection closed; a request it
        # pipelined behind is dropped unanswered (never refused, never run).
        with closing(connect(address)) as closing_client:
            closing_client.sendall(b"GET /v1/complaints HTTP/1.1\r\nHost: a\r\n"
                                   b"Connection: close\r\n\r\n" + post("/v1/complaints", b"{}"))
            raw = read_all(closing_client)
        assert raw.startswith(b"HTTP/1.1 503 ")
        assert raw.count(b"HTTP/1.1 ") == 1
        assert b"\r\nconnection: close\r\n" in raw.partition(b"\r\n\r\n")[0]
        assert status_and_body(raw)[1]["status"] == 503

        # Its request id returned and its access-log line written, as for any request.
        other.sendall(b"GET /v1/complaints HTTP/1.1\r\nHost: a\r\nX-Request-ID: shed-1\r\n\r\n")
        head, _ = read_response(other)
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"\r\nx-request-id: shed-1\r\n" in head + b"\r\n"
        logged = [r for r in caplog.records if getattr(r, "request_id", None) == "shed-1"]
        assert [(r.status, r.route) for r in logged] == [(503, UNMATCHED)]  # type: ignore[attr-defined]

        # A HEAD request is answered without a body, so the connection stays in step.
        other.sendall(b"HEAD /v1/complaints HTTP/1.1\r\nHost: a\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = other.recv(65536)
            assert chunk, "closed"
            raw += chunk
        assert raw.startswith(b"HTTP/1.1 503 ")
        assert raw.endswith(b"\r\n\r\n")
        assert int(raw.split(b"content-length: ")[1].split(b"\r\n")[0]) > 0

        # The probes pass, on the same connection: its refused body was read and dropped.
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = read_response(other)
        assert head.startswith(b"HTTP/1.1 200 ")

        held.release.set()
        head, _ = read_response(holding)
        assert head.startswith(b"HTTP/1.1 200 ")
        # With the slot free again, the next request is served.
        other.sendall(post("/v1/complaints", b"{}"))
        head, answer = read_response(other)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert answer == {"received": 2}
    assert held.seen == ["/hold", "/healthz", "/v1/complaints"]
    assert admission.refused == 4
    # Counted in the request figures like admission's own refusals, without reaching them.
    labels = {"method": "POST", "route": UNMATCHED, "status": "503"}
    assert registry.get_sample_value("aduan_http_requests_total", labels) == 1
    assert registry.get_sample_value("aduan_http_requests_total", {**labels, "method": "GET"}) == 2
    assert registry.get_sample_value("aduan_http_requests_total", {**labels, "method": "HEAD"}) == 1
    assert registry.get_sample_value("aduan_http_request_duration_seconds_count", labels) == 1


def test_a_probe_passes_admission_at_capacity_however_its_path_is_encoded() -> None:
    """Admission exempts the probes by the path the app is given; the server's refusal before
    the app reads the same decoded path."""
    held = HeldApp()
    with (served(Admission(held, limit=1, queue=0, wait=30)) as address,
          closing(connect(address)) as holding, closing(connect(address)) as other):
        held.hold(holding)  # the one slot is taken
        for target in (b"/healthz", b"/health%7A", b"/%72eadyz?x=1"):
            other.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            head, _ = read_response(other)
            assert head.startswith(b"HTTP/1.1 200 "), (target, head)
        other.sendall(b"GET /v1/%63omplaints HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(other)[0].startswith(b"HTTP/1.1 503 ")
        held.release.set()
        assert read_response(holding)[0].startswith(b"HTTP/1.1 200 ")
    assert held.seen == ["/hold", "/healthz", "/healthz", "/readyz"]


def test_a_body_still_arriving_holds_no_place_in_admission() -> None:
    """A slow client's upload, read before admission, does not make the server refuse others."""
    held = HeldApp()
    app = AccessLog(BodyGuard(Admission(held, limit=1, queue=0, wait=30)),
                    metrics=RequestMetrics(CollectorRegistry()))
    with (served(app) as address, closing(connect(address)) as slow,
          closing(connect(address)) as other):
        other.sendall(b"GET /v1/complaints HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(other)[0].startswith(b"HTTP/1.1 200 ")  # admission is known
        request = post("/v1/complaints", b'{"summary": "slow"}')
        slow.sendall(request[:-4])  # all but the body's last bytes
        time.sleep(0.3)  # handed to the app, its body still being read
        other.sendall(b"GET /v1/complaints HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _ = read_response(other)
        assert head.startswith(b"HTTP/1.1 200 ")
        slow.sendall(request[-4:])
        head, _ = read_response(slow)
        assert head.startswith(b"HTTP/1.1 200 ")
    assert held.seen == ["/v1/complaints"] * 3


async def test_aduan_serve_refuses_a_100_mib_header_and_keeps_serving(
        services: BackingServices) -> None:
    server = ServiceProcess("all", services.env(ADUAN_REQUEST_DEADLINE_SECONDS="2"),
                            services.workdir / "serve.log").start()
    try:
        await server.wait_ready()
        address = ("127.0.0.1", server.port)

        def attack() -> tuple[int, bytes]:
            sent = 0
            with closing(connect(address)) as conn:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: ")
                try:
                    while sent < 100 * 2**20:
                        conn.sendall(b"a" * 2**20)
                        sent += 2**20
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return sent, read_all(conn)

        sent, answer = await asyncio.to_thread(attack)
        assert sent < 32 * 2**20
        if answer:  # unless the reset overtook it
            assert status_and_body(answer)[0] == 431

        def silent() -> bytes:
            with closing(connect(address)) as conn:
                return read_all(conn)

        assert status_and_body(await asyncio.to_thread(silent))[0] == 408
        await asyncio.to_thread(assert_unparsable_is_a_400_problem, address)

        def slow_body() -> bytes:
            with closing(connect(address)) as conn:
                conn.sendall(post("/v1/complaints", b'{"summary": "slow"}')[:-4])
                return read_all(conn)

        assert status_and_body(await asyncio.to_thread(slow_body))[0] == 408
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
            figures = (await client.get("/metrics")).text
        # The body cut off is counted as the 408 it was answered, not as an app's 500.
        assert 'route="<unmatched>",status="408"} 1.0' in figures
        assert 'status="500"' not in figures
    finally:
        server.stop()


def read_raw_response(conn: socket.socket) -> tuple[dict[bytes, bytes], bytes]:
    """One response's headers (lower-case names, the status line under b"status") and body."""
    head, body = read_head_and_body(conn)
    lines = head.split(b"\r\n")
    headers = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip()
               for line in lines[1:]}
    return {b"status": lines[0], **headers}, body


def open311_errors(headers: dict[bytes, bytes], body: bytes) -> list[dict[str, Any]]:
    """The Open311 error list of a response, in whichever format it came."""
    if headers[b"content-type"].startswith(b"text/xml"):
        root = ElementTree.fromstring(body)
        assert root.tag == "errors"
        return [{"code": int(error.findtext("code") or 0),
                 "description": error.findtext("description")} for error in root]
    assert headers[b"content-type"] == b"application/json; charset=utf-8"
    listed: list[dict[str, Any]] = json.loads(body)
    return listed


def test_refusals_under_open311_made_before_the_app_are_the_error_list() -> None:
    """INTEGRATIONS.md: Open311 errors are the specification's error list with the matching
    status, also when the server refuses the request itself (admission's 503, the whole-request
    deadline's 408), in XML for a path ending ``.xml``, keeping ``Retry-After``."""
    held = HeldApp()
    with (served(Admission(held, limit=1, queue=0, wait=30)) as address,
          closing(connect(address)) as holding, closing(connect(address)) as other):
        held.hold(holding)  # the one slot is taken
        for path, media_type in [("/open311/v2/requests.xml?jurisdiction_id=x", b"text/xml"),
                                 ("/open311/v2/requests.json", b"application/json"),
                                 ("/open311/v2/services.xml", b"text/xml"),
                                 # Percent-decoded, as the app's routing reads the path.
                                 ("/open311/v2/requests%2Exml", b"text/xml"),
                                 ("/%6Fpen311/v2/services%2exml", b"text/xml"),
                                 ("/open311/v2/requests%2Ejson?f=.xml", b"application/json")]:
            other.sendall(post(path, b"service_code=x"))
            headers, body = read_raw_response(other)
            assert headers[b"status"].startswith(b"HTTP/1.1 503 "), (path, headers)
            assert headers[b"content-type"].startswith(media_type), (path, headers)
            assert headers[b"retry-after"] == b"30"
            errors = open311_errors(headers, body)
            assert [error["code"] for error in errors] == [503], (path, body)
            assert errors[0]["description"]
        other.sendall(post("/v1/complaints", b"{}"))  # elsewhere, problem JSON as before
        headers, body = read_raw_response(other)
        assert headers[b"content-type"] == b"application/problem+json"
        assert json.loads(body)["status"] == 503
        held.release.set()
        assert read_raw_response(holding)[0][b"status"].startswith(b"HTTP/1.1 200 ")
    assert held.seen == ["/hold"]

    with served(request_deadline_seconds=1) as address:
        for path, media_type in [("/open311/v2/requests.xml", b"text/xml"),
                                 ("/open311/v2/requests.json?api_key=k", b"application/json"),
                                 ("/open311/v2/requests%2Exml", b"text/xml")]:
            with closing(connect(address)) as conn:
                conn.sendall(f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/"
                             "x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nservice"
                             .encode())
                raw = read_all(conn)
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), (path, raw)
            headers = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip()
                       for line in head.split(b"\r\n")[1:]}
            assert headers[b"content-type"].startswith(media_type), (path, raw)
            assert [error["code"] for error in open311_errors(headers, body)] == [408]
        # Before its head has arrived a request's path is not known: problem JSON.
        with closing(connect(address)) as conn:
            conn.sendall(b"GET /open311/v2/services.json HTTP/1.1\r\nHost: a\r\n")
            status, problem = status_and_body(read_all(conn))
        assert (status, problem["status"]) == (408, 408)


# The same Open311 paths, some percent-encoded: the format the app answers in (its routing reads
# the decoded path) is the one the server's own refusals take.
ENCODED_OPEN311 = ["/open311/v2/requests%2Exml", "/open311/v2/requests%2exml",
                   "/%6Fpen311/v2/requests.xml", "/open311%2Fv2%2Frequests%2Exml",
                   "/open311/v2/requests%2Ejson", "/open311/v2/requests.xml"]


def content_type(raw: bytes) -> bytes:
    head = raw.partition(b"\r\n\r\n")[0]
    return next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-type:"))


async def test_a_percent_encoded_open311_suffix_is_one_format_whoever_answers(
        services: BackingServices) -> None:
    server = ServiceProcess("all", services.env(ADUAN_REQUEST_DEADLINE_SECONDS="1"),
                            services.workdir / "serve.log").start()
    try:
        await server.wait_ready()
        address = ("127.0.0.1", server.port)

        def answers(path: str) -> dict[str, tuple[int, bytes, list[int]]]:
            """The app's answer (no api_key: 403), the server's 408 (a body that stops
            arriving) and the parser's 400 (a malformed chunk), each its status, media type
            and error codes."""
            requests = {
                "app": f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                "deadline": f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/"
                            "x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nservice",
                "parser": f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/"
                          "x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "zz\r\nservice\r\n",
            }
            found = {}
            for who, request in requests.items():
                with closing(connect(address)) as conn:
                    conn.sendall(request.encode())
                    raw = read_all(conn)
                head, _, body = raw.partition(b"\r\n\r\n")
                headers = {line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip()
                           for line in head.split(b"\r\n")[1:]}
                codes = [error["code"] for error in open311_errors(headers, body)]
                found[who] = (int(head.split(b" ", 2)[1]), content_type(raw), codes)
            return found

        for path in ENCODED_OPEN311:
            found = await asyncio.to_thread(answers, path)
            expected = b"text/xml" if path.lower().endswith("xml") else b"application/json"
            assert found["app"][0] == 403, (path, found)
            assert {media.split(b";")[0] for _, media, _ in found.values()} == {expected}, \
                (path, found)
            assert [(status, codes) for status, _, codes in found.values()] == [
                (403, [403]), (408, [408]), (400, [400])], (path, found)
    finally:
        server.stop()


async def lookups_answered(server: ServiceProcess, forwarded_for: list[str]) -> list[int]:
    """The statuses of ``POST /public/status`` lookups, one per ``X-Forwarded-For`` value."""
    asked = {"tracking_number": "ADU-2022-000001", "access_code": "ABCD-EFGH-JKMN"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return [(await client.post("/public/status", json=asked,
                                   headers={"X-Forwarded-For": address})).status_code
                for address in forwarded_for]


async def test_the_public_lookup_limit_believes_x_forwarded_for_only_from_a_named_proxy(
        services: BackingServices) -> None:
    """INTEGRATIONS.md: lookups are limited per client address. A client on the host that
    writes a new ``X-Forwarded-For`` with each lookup is still one address; behind the proxy
    docs/deployment.md describes (``FORWARDED_ALLOW_IPS``), each address the proxy names is
    limited on its own."""
    env = services.env(ADUAN_PUBLIC_STATUS_PER_MINUTE="2", ADUAN_HTTP_WORKERS="1")
    env.pop("FORWARDED_ALLOW_IPS", None)
    direct = ServiceProcess("all", env, services.workdir / "direct.log").start()
    try:
        await direct.wait_ready()
        statuses = await lookups_answered(direct, [f"203.0.113.{n}" for n in range(1, 5)])
    finally:
        direct.stop()
    assert statuses == [404, 404, 429, 429]

    behind = ServiceProcess("all", {**env, "FORWARDED_ALLOW_IPS": "127.0.0.1"},
                            services.workdir / "behind.log").start()
    try:
        await behind.wait_ready()
        statuses = await lookups_answered(
            behind, ["203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2"])
    finally:
        behind.stop()
    assert statuses == [404, 404, 429, 404]


def test_headers_over_16_kib_under_open311_are_the_error_list_once_the_target_is_read() -> None:
    """INTEGRATIONS.md: Open311 errors are the specification's error list; a 431 refused after
    the request line is whole knows the path, so it answers in the path's format. A target cut
    off by the bound leaves the path unknown: problem JSON, as elsewhere."""
    big = b"X-Big: " + b"a" * (MAX_HEAD_BYTES + 1024) + b"\r\n\r\n"
    with served() as address:
        for target, media_type in [(b"/open311/v2/services.xml", b"text/xml"),
                                   (b"/open311/v2/requests.json?api_key=k", b"application/json"),
                                   (b"/%6Fpen311/v2/requests%2Exml", b"text/xml")]:
            for head in (b"Host: a\r\n" + big, big):  # the big header first, or after another
                with closing(connect(address)) as conn:
                    conn.sendall(b"GET " + target + b" HTTP/1.1\r\n" + head)
                    raw = read_all(conn)
                assert raw.startswith(b"HTTP/1.1 431 "), (target, raw[:200])
                assert content_type(raw).startswith(media_type), (target, raw[:200])
                headers = {b"content-type": content_type(raw)}
                errors = open311_errors(headers, raw.partition(b"\r\n\r\n")[2])
                assert [error["code"] for error in errors] == [431], (target, errors)
                assert str(MAX_HEAD_BYTES) in errors[0]["description"]
        cut = b"GET /open311/v2/services.xml?q=" + b"a" * (MAX_HEAD_BYTES + 1024)
        for request in (cut + b" HTTP/1.1\r\nHost: a\r\n" + big,
                        b"GET /v1/complaints HTTP/1.1\r\nHost: a\r\n" + big,
                        # Blank lines before the request line, which the parser skips, do not
                        # make a cut-off target look whole.
                        b"\r\n" * 40 + cut, b"\n" * 40 + cut):
            with closing(connect(address)) as conn:
                conn.sendall(request)
                raw = read_all(conn)
            assert content_type(raw) == b"application/problem+json", raw[:200]
            assert status_and_body(raw)[0] == 431
