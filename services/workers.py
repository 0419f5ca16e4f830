"""``aduan serve`` on every core: HTTP worker processes beside a main process.

One Python process answers requests on one core at most. With ``ADUAN_HTTP_WORKERS`` above 1,
``aduan serve`` binds the port and starts that many worker processes sharing the listening
socket: each new connection goes to whichever worker accepts it first, so a busy worker takes
fewer. Workers only answer requests. The main process answers none on the public port; it runs
what must run once per service (outbox relays, consumers, schedulers, the webhook dispatcher)
and renders ``GET /metrics`` on a Unix socket of its own, to which workers forward scrapes:
request counts and latencies of every worker are summed there (prometheus_client's multiprocess
mode), the rest is read as in a single process.

Nothing about a request changes: each worker has its own pool, its own admission bound and its
own bound on connections per client address (its own file descriptors, so it holds per worker);
the per-token and per-address rate limits hold for the whole instance: the main process writes
their tables (shared.ratelimit) in its private run directory before it starts any worker, and
every worker, one started again too, maps them. Commits announce themselves to the main
process's readers with ``NOTIFY`` as before. A worker dies with the main
process (``PR_SET_PDEATHSIG``); one that dies on its own is started again. A stop signal reaches
the workers first: they finish their requests, then the main process stops its background work,
so the relays publish what the workers committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client import values as prometheus_values

from services import heap
from shared.ratelimit import RateTables
from shared.settings import Settings

logger = logging.getLogger(__name__)

WORKER_STOP_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One worker per core this process may run on (at most 8); 1 means no worker processes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def die_with_parent() -> None:
    """Asks Linux to end this process when the process that started it ends (even SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Worker:
    """One worker process, forked or started afresh, known by its pid."""

    pid: int
    started: subprocess.Popen[bytes] | None = None  # kept, so that nothing else reaps it
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


class Workers:
    """The worker processes of one ``aduan serve``, restarted when one dies unasked.

    The first ones are forked once the app's modules are imported, before any thread or event
    loop runs: they start in a moment and share the main process's memory until they write to
    it. One started again later, while the main process runs its threads and event loop, is a
    fresh interpreter instead (forking a process with threads may copy a lock held by another).
    """

    def __init__(self, which: str, settings: Settings, listener: socket.socket,
                 internal: socket.socket, run: Path, count: int) -> None:
        # run holds main.sock, metrics/ and rate-limits/ (written before the workers start).
        self.which = which
        self.settings = settings
        self.listener = listener
        self.internal = internal
        self.metrics_socket = run / "main.sock"
        self.metrics_dir = run / "metrics"
        self.rate_limits = run / "rate-limits"
        self.count = count
        self.processes: list[_Worker] = []
        self.stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="workers", daemon=True)

    def _fork(self) -> _Worker:
        pid = os.fork()
        if pid:
            return _Worker(pid)
        code = 1
        try:
            self.internal.close()
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
            # prometheus_client chose its kind of values when the main process imported it.
            prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]
            signal.signal(signal.SIGTERM, _stopped)  # until uvicorn takes the signals over
            _serve_worker(self.which, self.listener, self.metrics_socket, os.getppid(),
                          self.rate_limits, self.settings)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            logger.exception("HTTP worker failed")
        finally:
            os._exit(code)

    def _spawn(self) -> _Worker:
        fd = self.listener.fileno()
        assert self.settings.database_url is not None
        env = {**os.environ, "ADUAN_DATABASE_URL": self.settings.database_url,
               "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        started = subprocess.Popen(
            [sys.executable, "-m", "services.workers", self.which, str(fd),
             str(self.metrics_socket), str(os.getpid()), str(self.rate_limits)],
            env=env, pass_fds=[fd], stdin=subprocess.DEVNULL)
        return _Worker(started.pid, started)

    def start(self) -> None:
        # What the workers share with this process is frozen before they fork, so that no
        # collector walks it again: a walk writes to every object it visits, and each worker
        # would copy every page of the heap it shares (68 MB more for two idle workers,
        # measured). Python's documentation of ``gc.freeze`` gives this use.
        heap.share_with_forks()
        self.processes = [self._fork() for _ in range(self.count)]
        self._watcher.start()

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            for n, process in enumerate(self.processes):
                code = process.poll()
                if code is not None and not self.stopping.is_set():
                    logger.warning("HTTP worker %d (pid %d) exited with %s; starting another",
                                   n, process.pid, code)
                    self.processes[n] = self._spawn()

    def signal(self, sig: int) -> None:
        """Passes a stop signal on (workers then finish the requests they hold)."""
        self.stopping.set()
        for process in self.processes:
            process.send_signal(sig)

    def wait(self, within: float = WORKER_STOP_SECONDS) -> None:
        deadline = time.monotonic() + within
        for process in self.processes:
            if not process.wait(max(0.1, deadline - time.monotonic())):
                logger.warning("HTTP worker (pid %d) did not stop in time; killed", process.pid)
                process.send_signal(signal.SIGKILL)
                process.wait(5.0)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        self.wait()

    async def stopped(self) -> None:
        """Waits (off the event loop) until the workers ended, after telling them to."""
        self.signal(signal.SIGTERM)
        await asyncio.to_thread(self.wait)


def _metrics_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


@contextlib.contextmanager
def _run_directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aduan-serve-") as name:
        os.chmod(name, 0o700)
        yield Path(name)


def serve_with_workers(which: str, *, settings: Settings, host: str, port: int,
                       listener: socket.socket, count: int) -> None:
    """Runs ``count`` HTTP workers on ``listener`` and the main process beside them."""
    from services.allinone import create_app
    from services.httpserver import serve
    from shared.web import Role

    with _run_directory() as run:
        (run / "metrics").mkdir()
        (run / "rate-limits").mkdir()
        RateTables.create(run / "rate-limits", settings.rate_limit_callers)
        internal = _metrics_socket(run / "main.sock")
        workers = Workers(which, settings, listener, internal, run, count)
        workers.start()
        try:
            role = Role(background=True, worker_metrics=run / "metrics",
                        rate_limits=workers.rate_limits, before_stop=workers.stopped)
            serve(create_app(which, settings, role=role), host=host, port=port,
                  settings=settings, sockets=[internal], on_exit=workers.signal)
        finally:
            workers.stop()
            internal.close()


def _serve_worker(which: str, listener: socket.socket, metrics_socket: Path, parent: int,
                  rate_limits: Path, settings: Settings) -> None:
    from services.allinone import create_app
    from services.httpserver import serve
    from shared.web import Role

    die_with_parent()
    if os.getppid() != parent:  # the main process ended before the request above took effect
        return
    role = Role(background=False, metrics_from=metrics_socket, rate_limits=rate_limits)
    serve(create_app(which, settings, role=role), host="", port=0,
          settings=settings, sockets=[listener])


def _stopped(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _main(argv: list[str]) -> None:
    """``python -m services.workers WHICH FD METRICS_SOCKET PARENT_PID RATE_LIMITS``: a worker
    started again by ``Workers`` after one died, attached to the rate limit tables in the
    directory RATE_LIMITS like the others."""
    from shared.logging import configure_logging
    from shared.settings import get_settings

    signal.signal(signal.SIGTERM, _stopped)  # until uvicorn takes the signals over
    settings = get_settings()
    configure_logging(settings)
    _serve_worker(argv[1], socket.socket(fileno=int(argv[2])), Path(argv[3]), int(argv[4]),
                  Path(argv[5]), settings)


if __name__ == "__main__":
    _main(sys.argv)
