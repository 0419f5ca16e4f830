"""Launch a real single-node Apache Kafka broker (KRaft, broker+controller in one JVM).

The broker jars are resolved once by Maven from ``services/kafka_broker/pom.xml`` into a cache
directory outside the repository (``~/.cache/aduan/kafka-<version>`` or
``$ADUAN_KAFKA_CACHE_DIR``); every later start only runs ``java``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import collections
import concurrent.futures
import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

logger = logging.getLogger(__name__)

_BROKER_DIR = Path(__file__).resolve().parent / "kafka_broker"
_POM = _BROKER_DIR / "pom.xml"
_LOG4J_CONFIG = _BROKER_DIR / "log4j2.properties"
_HOST = "127.0.0.1"
_BROKER_JVM_OPTS = ("-Xmx512m", "-Xms256m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError")
# Short-lived CLI tools: the C1 compiler alone starts faster.
_TOOL_JVM_OPTS = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
_PR_SET_PDEATHSIG = 1


class KafkaUnavailable(RuntimeError):
    """The broker cannot be started; the first line of the message says why."""


@dataclass(eq=False)
class KafkaBroker:
    """A running broker process; ``stop()`` is idempotent and also runs at interpreter exit."""

    bootstrap_servers: str
    data_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.bootstrap_servers.rsplit(":", 1)[1])

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the broker's process group, wait ``timeout`` seconds, then SIGKILL."""
        atexit.unregister(self.stop)
        if self.process.poll() is not None:
            return
        logger.info("Stopping Kafka broker %s (pid %d)", self.bootstrap_servers, self.process.pid)
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("Kafka broker did not stop within %.0fs; killing it", timeout)
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 200) -> str:
        try:
            with self.log_file.open(encoding="utf-8", errors="replace") as log:
                return "".join(collections.deque(log, maxlen=lines))
        except FileNotFoundError:
            return ""


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", _POM.read_text())
    if match is None:
        raise RuntimeError(f"no <kafka.version> property in {_POM}")
    return match.group(1).strip()


def kafka_cache_dir() -> Path:
    override = os.environ.get("ADUAN_KAFKA_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "aduan" / f"kafka-{kafka_version()}"


def ensure_kafka_jars() -> Path:
    """Return the directory holding the broker's jars, fetching them with Maven the first time.

    A marker file holding the pom's hash records a completed copy (editing the pom refetches);
    an exclusive file lock keeps concurrent processes from fetching at the same time.
    """
    cache = kafka_cache_dir()
    lib = cache / "lib"
    marker = cache / "complete.sha256"
    digest = hashlib.sha256(_POM.read_bytes()).hexdigest()
    if _read_text(marker) == digest:
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if _read_text(marker) == digest:
            return lib
        marker.unlink(missing_ok=True)
        shutil.rmtree(lib, ignore_errors=True)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaUnavailable("Maven (mvn) is required to fetch the Kafka broker jars once")
        command = [
            mvn, "-B", "-q", "-f", str(_POM),
            "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
        ]  # fmt: skip
        logger.info("Fetching Kafka %s jars into %s", kafka_version(), lib)
        started = time.monotonic()
        result = subprocess.run(command, cwd=cache, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaUnavailable(
                f"fetching Kafka jars failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        marker.write_text(digest)
        logger.info("Fetched Kafka jars in %.1fs", time.monotonic() - started)
    return lib


def start_kafka(data_dir: Path, *, port: int | None = None, timeout: float = 90,
                detach: bool = False) -> KafkaBroker:
    """Start a broker on ``127.0.0.1:port`` (a free port if None) storing its data in data_dir.

    ``detach`` leaves the broker running after this process exits (``aduan infra up``); its pid
    is kept in ``data_dir/broker.pid`` for ``stop_detached``.

    Storage is formatted only on first use, so stopping a broker and starting it again with
    the same data_dir and port keeps its topics, offsets and producer state.
    """
    started = time.monotonic()
    java = java_executable()
    lib = ensure_kafka_jars()
    data_dir = data_dir.resolve()
    if detach and (running := detached_broker(data_dir)) is not None:
        raise KafkaUnavailable(f"a Kafka broker already runs on {data_dir} at {running}")
    logs_dir = data_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_file = logs_dir / "server.log"
    broker_port, controller_port = _free_ports(2)
    if port is not None:
        broker_port = port
        while controller_port == port:
            controller_port = _free_ports(1)[0]
    config = data_dir / "server.properties"
    config.write_text(_server_properties(data_dir / "kraft", broker_port, controller_port))
    log_opts = [f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}", f"-Dkafka.logs.dir={logs_dir}"]
    classpath = ["-cp", f"{lib}/*"]

    if not (data_dir / "kraft" / "meta.properties").exists():
        format_command = [
            java, *_TOOL_JVM_OPTS, *log_opts, *classpath, "kafka.tools.StorageTool",
            "format", "--cluster-id", _random_cluster_id(), "--config", str(config),
        ]  # fmt: skip
        result = subprocess.run(format_command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    bootstrap_servers = f"{_HOST}:{broker_port}"
    with log_file.open("ab") as out:
        out.write(f"=== aduan: starting Kafka broker on {bootstrap_servers} ===\n".encode())
        out.flush()
        process = subprocess.Popen(
            [java, *_BROKER_JVM_OPTS, *log_opts, *classpath, "kafka.Kafka", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent_fn(),
        )
    broker = KafkaBroker(bootstrap_servers, data_dir, log_file, process)
    # Stopped at exit until it is ready, detached or not: a broker that never came up is not
    # left behind by ``infra up``.
    atexit.register(broker.stop)
    try:
        remaining = timeout - (time.monotonic() - started)
        wait_for_kafka_sync(bootstrap_servers, remaining, process=process)
    except (RuntimeError, TimeoutError) as exc:
        broker.stop(timeout=10)
        raise KafkaUnavailable(f"{exc}\n--- {log_file} (tail) ---\n{broker.log_tail()}") from exc
    except BaseException:
        broker.stop(timeout=10)
        raise
    if detach:
        atexit.unregister(broker.stop)
        # Written only once the broker answers, so the files never name a broker that failed.
        (data_dir / "broker.address").write_text(bootstrap_servers)
        (data_dir / "broker.pid").write_text(str(process.pid))
    logger.info(
        "Kafka broker ready on %s in %.1fs (pid %d, data %s)",
        bootstrap_servers,
        time.monotonic() - started,
        process.pid,
        data_dir,
    )
    return broker


async def wait_for_kafka(
    bootstrap_servers: str,
    timeout: float,
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Retry a metadata request until the cluster reports a live broker.

    Raises TimeoutError after ``timeout`` seconds, or RuntimeError as soon as ``process``
    (if given) has exited.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"Kafka broker process exited with code {process.returncode}")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(
                f"Kafka at {bootstrap_servers} not ready after {timeout:.1f}s: {last_error!r}"
            )
        try:
            async with asyncio.timeout(min(remaining, 10)):
                await _probe(bootstrap_servers)
            return
        except (OSError, KafkaError, TimeoutError) as exc:
            last_error = exc
        await asyncio.sleep(0.1)


def wait_for_kafka_sync(
    bootstrap_servers: str,
    timeout: float,
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Blocking ``wait_for_kafka``; also usable while this thread runs an event loop."""
    coro = wait_for_kafka(bootstrap_servers, timeout, process=process)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _probe(bootstrap_servers: str) -> None:
    # A plain TCP connect first: aiokafka logs every failed bootstrap attempt at ERROR level.
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    await writer.wait_closed()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    if not cluster.get("brokers"):
        raise ConnectionError("metadata response lists no live broker yet")


def _server_properties(kraft_dir: Path, port: int, controller_port: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static voter set: restarts may use another controller port.
        "controller.quorum.voters": f"1@{_HOST}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(kraft_dir),
        "num.partitions": "3",
        "default.replication.factor": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",  # default 50: slows down the first group join
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((_HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _random_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid(): url-safe base64 of 16 bytes, no padding,
    # never starting with "-" (it would read as a command-line flag).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not Path(java).exists():
        raise KafkaUnavailable("a Java 17+ runtime (java) is required to run the Kafka broker: "
                               "install one (e.g. apt-get install openjdk-17-jre-headless) or "
                               "set ADUAN_KAFKA_BOOTSTRAP_SERVERS to a running cluster")
    return java


def _die_with_parent_fn() -> Callable[[], None] | None:
    """A preexec_fn making the kernel SIGKILL the broker when this process dies (Linux only).

    The kernel ties this to the *thread* that forks, so it is only armed from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return arm


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the broker leads its own session and process group


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def detached_broker(data_dir: Path) -> str | None:
    """The address of the broker ``start_kafka(detach=True)`` left running on ``data_dir``."""
    data_dir = data_dir.resolve()
    pid = _read_text(data_dir / "broker.pid")
    address = _read_text(data_dir / "broker.address")
    if pid is None or not pid.isdigit() or address is None:
        return None
    try:
        os.killpg(int(pid), 0)
    except (ProcessLookupError, PermissionError):
        return None
    return address


def stop_detached(data_dir: Path, timeout: float = 15) -> bool:
    """Stops a broker started with ``detach=True``: SIGTERM to its process group, SIGKILL after
    ``timeout`` seconds. False when none was running."""
    data_dir = data_dir.resolve()
    pid_text = _read_text(data_dir / "broker.pid")
    for name in ("broker.pid", "broker.address"):
        (data_dir / name).unlink(missing_ok=True)
    if pid_text is None or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    logger.warning("Kafka broker (pid %d) did not stop within %.0fs; killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True
