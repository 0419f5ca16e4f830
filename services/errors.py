"""What an operator reads when a command cannot run: one line saying why, not a traceback.

Only failures of the surroundings are turned into a line (a database that cannot be reached,
no Java, a port in use, a PostgreSQL that cannot start); a bug still shows its traceback.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError

from services.kafka import KafkaUnavailable
from services.postgres import PostgresUnavailable


class CommandFailed(Exception):
    """A failure already put into words for the operator."""


def listening_socket(host: str, port: int) -> socket.socket:
    """Binds the server's socket before anything says the server started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CommandFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                            "(another program uses the port? choose one with --port)") from exc
    sock.set_inheritable(True)
    return sock


def _database_reason(exc: BaseException) -> str:
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def describe(exc: BaseException) -> str | None:
    """One line for a failure of the surroundings; None for anything else."""
    if isinstance(exc, CommandFailed | PostgresUnavailable | KafkaUnavailable):
        return str(exc).strip().splitlines()[0]
    if isinstance(exc, DBAPIError | ConnectionError | TimeoutError | socket.gaierror):
        return f"cannot reach the database (ADUAN_DATABASE_URL): {_database_reason(exc)}"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot reach the database (ADUAN_DATABASE_URL): {_database_reason(exc)}"
    if isinstance(exc, subprocess.CalledProcessError | subprocess.TimeoutExpired):
        return (f"{exc.cmd[0] if isinstance(exc.cmd, list) else exc.cmd} failed; the embedded "
                "PostgreSQL's log is in its data directory (file 'log')")
    return None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turns a failure of the surroundings into ``aduan: <why>`` and exit status 1."""
    try:
        yield
    except Exception as exc:
        line = describe(exc)
        if line is None:
            raise
        sys.stderr.write(f"aduan: {line}\n")
        raise SystemExit(1) from None
