"""A real HTTP receiver on loopback, in a thread: records what it is sent, answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    """``status`` is what it answers; ``delay`` seconds it waits first (a hanging receiver)."""

    status: int = 204
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    answers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def bodies(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            items = [r.json for r in self.received]
        return [b for b in items if event_type is None or b["type"] == event_type]

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def answered(self) -> int:
        """How many requests it has answered (the others are still waiting, or were dropped)."""
        with self.lock:
            return self.answers


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                    receiver.status))
            if receiver.delay:
                time.sleep(receiver.delay)
            try:
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()
                with receiver.lock:
                    receiver.answers += 1
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def receiving(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
