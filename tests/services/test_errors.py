"""Failures of the surroundings end a command with one line, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.support import BackingServices


def aduan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_an_unreachable_database_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADUAN_")}
    env["ADUAN_DATABASE_URL"] = "postgresql+asyncpg://aduan@127.0.0.1:1/aduan"
    for command in (["migrate"], ["token", "create", "--role", "admin", "--name", "admin"]):
        result = aduan(*command, env=env)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "aduan: cannot reach the database (ADUAN_DATABASE_URL): ConnectionRefusedError: "
            "[Errno 111] Connect call failed ('127.0.0.1', 1)"], result.stderr


def test_a_busy_port_is_one_line_and_no_banner(services: BackingServices) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = aduan("serve", "intake", "--port", str(port), env=services.env())
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"aduan: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "aduan intake:" not in result.stdout  # the banner never claimed it started
