"""Configuration from the environment (prefix ``ADUAN_``)."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# In containers secrets are files: compose.yaml mounts ADUAN_DATABASE_URL as
# /run/secrets/aduan_database_url, so the password is in no environment and no compose file.
SECRETS_DIR = Path("/run/secrets")
# How long a BI login's statement or transaction may last (docs/bi.md).
BI_QUERY_LIMIT_SECONDS = 120.0


# What PostgreSQL's ``listen_addresses`` takes, item by item: ``*``, an IP address, a host name.
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,200}")


def _listen_item(item: str) -> str:
    if item == "*":
        return item
    try:
        return str(ipaddress.ip_address(item))
    except ValueError:
        pass
    # Dotted numbers that are no IPv4 address (999.1.1.1) are a mistyped address, not a name.
    labels = item.rstrip(".").split(".")
    if (_DOTTED_NUMBERS.fullmatch(item) or len(item) > 253
            or not all(_HOST_LABEL.fullmatch(label) for label in labels)):
        raise ValueError(f"{item[:80]!r} is neither '*', an IP address nor a host name")
    return item


def listen_addresses(value: str) -> str:
    """``value`` checked as PostgreSQL's ``listen_addresses`` reads it (a comma-separated list
    of ``*``, IP addresses and host names, or nothing for no TCP at all): the embedded server
    is started with it, and a bad one would otherwise surface as a server that does not start,
    its reason in its own log (or, quoted into ``pg_ctl``'s options, as options of its own)."""
    if not value.strip():
        return ""  # no TCP listener: Unix sockets only (docs/bi.md)
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise ValueError("must list addresses separated by commas ('*', an IP address or a "
                         "host name), none empty")
    return ",".join(_listen_item(item) for item in items)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ADUAN_", extra="ignore",
        secrets_dir=SECRETS_DIR if SECRETS_DIR.is_dir() else None,
    )

    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    topic_prefix: str = ""
    # Prefixes the consumer group ids too; empty in production, set to isolate test runs.
    group_prefix: str = ""
    timezone: str = "Asia/Jakarta"
    data_dir: Path = Path(".aduan")
    # The embedded server's TCP listener, for BI tools (password logins only); port 0: any free.
    database_listen: str = "127.0.0.1"
    database_port: int = Field(default=5433, ge=0, le=65535)
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    # Lookups with an access code, per client address: guessing codes must stay hopeless.
    public_status_per_minute: int = Field(default=10, ge=0)
    # Callers each of those two limits keeps at once (shared.ratelimit), for all the processes
    # of an instance: 16 bytes each. Beyond, the caller nearest a full allowance is forgotten
    # (let through on its next request, never refused wrongly).
    rate_limit_callers: int = Field(default=65_536, ge=64, le=16_777_216)
    # Webhooks (INTEGRATIONS.md). The retry schedule is a setting so that tests run it in seconds.
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3 * 3600.0, gt=0)
    webhook_retry_for_seconds: float = Field(default=24 * 3600.0, ge=0)
    # The dispatcher wakes when a delivery is made due and sleeps until the next due time; it
    # looks this often only while notifications are unavailable (``wakeup_fallback_seconds``
    # otherwise).
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # Attempts in flight in one process, and the share of them one subscription, one owner (the
    # caller who subscribed) and one receiving origin (scheme://host:port) may hold, so that a
    # slow receiver, or a party with many subscriptions, leaves slots for everyone else.
    webhook_concurrency: int = Field(default=32, ge=1)
    webhook_concurrency_per_subscription: int = Field(default=4, ge=1)
    webhook_concurrency_per_owner: int = Field(default=8, ge=1)
    webhook_concurrency_per_origin: int = Field(default=8, ge=1)
    expiry_interval_seconds: float = Field(default=30.0, gt=0)
    # BI logins (``aduan bi-user create``) start with this statement_timeout, which a session
    # may SET away; the metrics service cancels their statements and ends their transactions
    # that outlast it anyway, looking this often (``metrics_worker.bi_watchdog``).
    bi_query_limit_seconds: float = Field(default=BI_QUERY_LIMIT_SECONDS, gt=0, le=86_400)
    bi_watchdog_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    consumer_poll_seconds: float = Field(default=0.2, gt=0)
    relay_poll_seconds: float = Field(default=0.2, gt=0)
    # Database-log readers and relays wake on LISTEN/NOTIFY; they also look this often anyway
    # (each look is a few short transactions per reader: most of what an idle server does).
    wakeup_fallback_seconds: float = Field(default=30.0, gt=0, le=3600)
    # When set, GET /metrics needs it as a bearer token.
    metrics_token: str | None = None
    # Kafka clients. A consumer's fetch waits at most this long for records to arrive; with one
    # broker, partitions whose records were just handed over are asked for again only once that
    # wait ends, so it bounds the latency each hop adds. Idle, it sets how often each consumer
    # asks: six idle consumers cost the broker ~11 % of a core at 500 ms, ~17 % at 100 ms and
    # ~24 % at 50 ms (docs/benchmarks.md).
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1, le=10_000)
    # ... unless this many bytes arrived sooner. Under load a fetch then hands over a batch
    # rather than the one or two records that came in since the last: each batch costs a
    # transaction, an offset commit and a fetch round trip whatever its size (~15 records of
    # a complaint's size; idle, or under a light load, the wait above bounds the delay).
    kafka_fetch_min_bytes: int = Field(default=16_384, ge=1, le=52_428_800)
    # The same for consumers whose effects may lag a moment (``Subscription.patient``: the
    # figures, webhook deliveries, a complaint's status): at 300 complaints a second, batches
    # of ~50 rather than ~15, and idle, a fifth of the fetches.
    kafka_patient_fetch_max_wait_ms: int = Field(default=500, ge=1, le=10_000)
    kafka_patient_fetch_min_bytes: int = Field(default=65_536, ge=1, le=52_428_800)
    # A consumer commits its offsets to Kafka this often (and at once after a dead letter, on
    # losing a partition and on stopping), not after every batch: a commit costs the broker a
    # write and the consumer a round trip it waits for. A crash makes the next owner read up
    # to this much again, which the processed-event table skips. 0: after every batch.
    kafka_commit_interval_ms: int = Field(default=1000, ge=0, le=60_000)
    # The producer waits this long to fill a batch: fewer, larger requests under load.
    kafka_linger_ms: int = Field(default=5, ge=0, le=1000)
    # Connections per process: requests, consumers and relays share them.
    database_pool_size: int = Field(default=10, ge=1, le=500)
    database_max_overflow: int = Field(default=20, ge=0, le=500)
    # How long a request waits for a connection before it is answered 503.
    database_pool_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # How long a request waits on the database for one thing (a connection opened, a statement,
    # its commit) before it is answered 503 (shared/db.py ``Database.connect``): PostgreSQL
    # cancels a statement running longer (``statement_timeout``), and one that does not answer
    # at all (a stalled server) is given up a moment later. Consumers, relays, rebuilds,
    # migrations and commands use connections of their own, with longer limits.
    database_request_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    # Admission (shared/admission.py): requests running at once per process, how many more
    # may wait for a slot, and how long a request may wait from its arrival before it starts;
    # beyond that, 503 with Retry-After. 0 turns it off. A request spends much of its time
    # waiting on PostgreSQL, the more so when the processor is shared: one process needs a few
    # dozen at once to keep busy (8 gave a third of the throughput of 24 in docs/benchmarks.md).
    max_requests_in_flight: int = Field(default=24, ge=0, le=10_000)
    admission_queue: int = Field(default=256, ge=0, le=100_000)
    admission_wait_seconds: float = Field(default=1.0, gt=0, le=30)
    # A queue whose oldest request has waited longer than this is standing: it only adds delay
    # (every slot is busy), so newcomers are refused rather than queued behind it. About one
    # request's run at full load: enough queued to refill each slot as soon as it frees.
    admission_queue_delay_seconds: float = Field(default=0.1, gt=0, le=30)
    # ... but only once it has been so for this long (a stall of a healthy service is shorter),
    # or again within this long of the last refusal for it (the same overload coming back).
    admission_interval_seconds: float = Field(default=0.5, gt=0, le=30)
    # Group commit (intake_api/group_commit.py): at most this many complaints posted at the
    # same time are written by one statement; 1 writes each alone.
    intake_group_largest: int = Field(default=100, ge=1, le=1000)
    # HTTP worker processes of `aduan serve` (services/workers.py); 0: one per core (at most 8),
    # 1: a single process answering requests and running the background work.
    http_workers: int = Field(default=0, ge=0, le=64)
    # Hostile clients (services/httpserver.py): a request must arrive whole within the deadline;
    # 0 connections per client address means no bound (when a reverse proxy sets its own).
    request_deadline_seconds: float = Field(default=30.0, gt=0)
    max_connections_per_client: int = Field(default=100, ge=0)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql+asyncpg://", "postgresql://")):
            raise ValueError("must be a postgresql+asyncpg:// URL")
        if value is not None and value.startswith("postgresql://"):
            return "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("database_listen")
    @classmethod
    def _listen_addresses(cls, value: str) -> str:
        return listen_addresses(value)

    @field_validator("topic_prefix")
    @classmethod
    def _topic_characters(cls, value: str) -> str:
        if not TOPIC_PREFIX.fullmatch(value):
            raise ValueError("may hold only ASCII letters, digits, '.', '_' and '-' (Kafka topic "
                             "names), at most 200 of them")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def describe_error(exc: ValidationError) -> str:
    """One line naming the environment variable behind the first bad value."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    return f"ADUAN_{field.upper()}: {first['msg']} (got {first.get('input')!r})"


# Read by the launchers, the tests and the benchmarks rather than by the services.
KNOWN_ELSEWHERE = frozenset({
    "ADUAN_KAFKA_CACHE_DIR", "ADUAN_TEST_DATABASE_URL", "ADUAN_TEST_KAFKA_BOOTSTRAP_SERVERS",
    "ADUAN_TEST_SLOW", "ADUAN_BENCH_DATABASE_URL",
})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per ``ADUAN_*`` variable nothing reads: a misspelling would otherwise go unseen
    (``ADUAN_DATABSE_URL`` and the embedded database is used instead)."""
    known = {f"ADUAN_{name.upper()}" for name in Settings.model_fields} | KNOWN_ELSEWHERE
    lines = []
    for name in sorted(n for n in environ if n.upper().startswith("ADUAN_")):
        if name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"aduan: unknown setting {name} is ignored{hint}")
    return lines


@lru_cache(maxsize=1)
def report_unknown_variables() -> None:
    """Writes the lines of ``unknown_variables`` to standard error, once per process."""
    for line in unknown_variables(os.environ):
        sys.stderr.write(line + "\n")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    report_unknown_variables()
    try:
        return Settings()
    except ValidationError as exc:
        sys.stderr.write(f"aduan: bad configuration: {describe_error(exc)}\n")
        raise SystemExit(2) from None
