"""Rebuilding the metrics read model from the start of its event log (``aduan metrics rebuild``).

The read model is derived from events only, so it can be dropped and replayed. A replay is
set-based, not the live projection run once per event: the log is read in large batches and
folded in memory into the rows of the fact tables (``metrics_worker.replay``, the projection's
rules over a whole log), which are written with ``COPY`` while the next batches are read; the
aggregate tables are counted by local day during the same fold (``metrics_worker.tally``) and
written with ``COPY`` at the end, all in one transaction.

- **Kafka** (``ADUAN_KAFKA_BOOTSTRAP_SERVERS`` set): every partition of the two topics is read
  from offset 0 up to the end offsets measured at the start; after the commit, the group
  ``<ADUAN_GROUP_PREFIX>aduan-metrics`` is given those end offsets, so the metrics service goes
  on from there. The group must have no active member: stop the metrics service first. A
  rebuild refuses to run while the group has members (asked again just before writing), and
  when a topic no longer starts at offset 0 (records removed by retention could not be
  replayed).
- **Database log** (no Kafka): the outbox tables are read by position up to their end at the
  start, and this consumer's positions are set to those ends in the same transaction. Stop
  ``aduan serve`` first: nothing can tell from the database alone whether it runs.

Either way the processed-event table is filled with every event folded, as the live consumer
would have left it, and what it would have dead-lettered is dead-lettered the same way.

Emptied: every table of the ``metrics`` schema mapped in ``metrics_worker.models``, except
``targets`` (set by people, not derived from events). Kept as well: ``office`` (the configured
time zone) and the bus's own tables (dead letters; this consumer's processed events and
log positions are replaced). A table of the schema that is none of these, or a derived table the
rebuild does not know how to fill, stops the rebuild before anything is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import asyncpg
import stamina
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    NotCoordinatorError,
    for_code,
)
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import Index, Table, Text, cast, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.schema import (
    AddConstraint,
    CreateIndex,
    DropConstraint,
    DropIndex,
    ExecutableDDLElement,
)

from metrics_worker import tally
from metrics_worker.consumer import CONSUMER, SUBSCRIPTION, office_timezone
from metrics_worker.models import SCHEMA
from metrics_worker.replay import (
    ASSIGNMENT_COLUMNS,
    CASE_COLUMNS,
    CONTACT_COLUMNS,
    PREVIOUS_STEP_COLUMNS,
    TRANSITION_COLUMNS,
    Replay,
)
from metrics_worker.tally import Tally
from shared.bus import KafkaConsumerRunner
from shared.db import Base, Database
from shared.events import Event
from shared.kafka_client import KafkaPublisher
from shared.outbox import sequence as outbox_sequence
from shared.runtime import DATABASE_LOGS
from shared.settings import Settings
from shared.tables import METRICS_EVENTS

logger = logging.getLogger(__name__)

KEPT_TABLES = frozenset({"targets", "office"})  # set by people or by configuration
BUS_TABLES = frozenset(t.name for t in (
    METRICS_EVENTS.processed_events, METRICS_EVENTS.log_positions, METRICS_EVENTS.dead_letters))
_COORDINATOR_PENDING = (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError,
                        NotCoordinatorError)
# Written by ``store`` from the fold.
FACT_TABLES = ("contacts", "cases", "transitions", "assignments")


def read_model_tables() -> list[str]:
    """The tables derived from events only: emptied and filled again by a rebuild."""
    return sorted(t.name for t in Base.metadata.tables.values()
                  if t.schema == SCHEMA and t.name not in KEPT_TABLES | BUS_TABLES)


class RebuildRefused(RuntimeError):
    """The rebuild would not give complete figures, or would race a running metrics service."""


class ProgressReport(Protocol):
    """Where a rebuild reports how far it got; ``total`` is the number of records to replay."""

    def start(self, total: int) -> None: ...

    def update(self, completed: int) -> None: ...


class Silent:
    def start(self, total: int) -> None:
        pass

    def update(self, completed: int) -> None:
        pass


class ProgressBar:
    """A ``rich`` progress bar on standard error."""

    def __init__(self, description: str = "replaying events") -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("records"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.description = description
        self.task: TaskID | None = None

    @contextlib.contextmanager
    def shown(self) -> Iterator[ProgressBar]:
        with self.progress:
            yield self

    def start(self, total: int) -> None:
        self.task = self.progress.add_task(self.description, total=total)

    def update(self, completed: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=completed)


@dataclass(frozen=True)
class RebuildResult:
    mode: Literal["kafka", "database"]
    records: int  # records replayed (the progress bar's total)
    seconds: float
    dead_lettered: int = 0  # records the live consumer would not have applied either
    read_seconds: float = 0.0  # reading and folding the log
    write_seconds: float = 0.0  # writing the read model, in one transaction

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def check_tables(session: AsyncSession) -> list[str]:
    """The read model's tables present; refuses when the schema holds a table not classified."""
    present = set((await session.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
        {"schema": SCHEMA})).scalars())
    derived = read_model_tables()
    unknown = present - set(derived) - KEPT_TABLES - BUS_TABLES
    if unknown:
        raise RebuildRefused(
            f"{', '.join(f'{SCHEMA}.{t}' for t in sorted(unknown))}: not known as derived "
            "from events nor as kept; classify it in metrics_worker/rebuild.py first")
    unfilled = set(derived) - set(FACT_TABLES) - set(tally.TABLES)
    if unfilled:
        raise RebuildRefused(
            f"{', '.join(f'{SCHEMA}.{t}' for t in sorted(unfilled))}: derived from events, but "
            "the rebuild does not fill it; count it in metrics_worker/tally.py first")
    return [t for t in derived if t in present]


def _aggregate_tables() -> list[Table]:
    """The aggregate tables (``tally.TABLES``), written at the end of a rebuild."""
    return [Base.metadata.tables[f"{SCHEMA}.{table}"] for table in tally.TABLES]


def _keys_and_indexes(tables: Sequence[str], indexes: Sequence[Index]) -> list[
        ExecutableDDLElement]:
    """The primary keys and the ``indexes`` of the aggregate ``tables`` (as dropped by
    ``Writer.opened``)."""
    named = {f"{SCHEMA}.{table}" for table in tables}
    return [*(AddConstraint(table.primary_key) for table in _aggregate_tables()
              if table.fullname in named),
            *(CreateIndex(index) for index in indexes if str(index.table) in named)]


def _secondary_indexes() -> list[Index]:
    """The indexes of the read model's tables as the models declare them (the migrations
    agree, ``tests/test_migrations.py``), primary keys aside."""
    return [index for table in read_model_tables()
            for index in sorted(Base.metadata.tables[f"{SCHEMA}.{table}"].indexes,
                                key=lambda i: str(i.name))]


async def reset_read_model(session: AsyncSession) -> None:
    """Empties the read model and forgets what this consumer processed (targets are kept)."""
    tables = await check_tables(session)
    await session.execute(text(f"TRUNCATE {', '.join(f'{SCHEMA}.{t}' for t in tables)}"))
    for table in (METRICS_EVENTS.processed_events, METRICS_EVENTS.log_positions):
        await session.execute(table.delete().where(table.c.consumer == CONSUMER))


async def rebuild(settings: Settings, *, progress: ProgressReport | None = None,
                  batch_size: int = 20_000) -> RebuildResult:
    """Drops the read model and replays every event; Kafka when configured, else the database."""
    if settings.database_url is None:
        raise RuntimeError("ADUAN_DATABASE_URL is not set")
    with _without_cycle_collection():
        async with Database.opened(settings.database_url, pool_size=2) as database:
            if settings.kafka_bootstrap_servers:
                return await _rebuild_from_kafka(settings, settings.kafka_bootstrap_servers,
                                                 database, progress or Silent(), batch_size)
            return await _rebuild_from_database(database, progress or Silent(), batch_size)


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """The fold keeps the open cases, every event id and complaint in memory and makes no
    reference cycles: the cyclic garbage collector would walk that growing heap again and again
    for nothing (a third of the reading time when measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- writing the read model --------------------------------------------------------------------

class Writer:
    """Writes the read model in the rebuild's one transaction while the log is still read.

    The read model is emptied first; then each ``flush`` hands the rows folded since the last
    one (cases once closed) to ``COPY`` in the background, so the server stores a batch while
    the next is folded. ``finish`` writes the cases still open and the aggregate tables as
    the fold counted them.
    """

    def __init__(self, session: AsyncSession, connection: asyncpg.Connection,
                 replay: Replay) -> None:
        self.session = session
        self.connection = connection
        self.replay = replay
        self.copying: asyncio.Task[None] | None = None
        self.building: asyncio.Task[str] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, session: AsyncSession, replay: Replay) -> AsyncIterator[Writer]:
        await reset_read_model(session)
        # Secondary indexes built once over the loaded rows, not row by row (emptied tables,
        # locked by the truncation until the commit).
        for index in _secondary_indexes():
            await session.execute(DropIndex(index))
        # The aggregate tables' primary keys too: their rows are all written at the end, and
        # a key built from them in one sort took a third of the time of 155,000 rows'
        # insertions one by one into it. Put back before the commit (``_aggregate_keys``):
        # were the rows not unique, the rebuild would fail there as it would have in ``COPY``.
        for table in _aggregate_tables():
            await session.execute(DropConstraint(table.primary_key))
        connection = (await (await session.connection()).get_raw_connection()).driver_connection
        assert connection is not None
        writer = cls(session, connection, replay)
        try:
            yield writer
        finally:
            # Work still running on the connection when something failed here: stopped, so
            # the rollback (and the error that caused it) reaches the caller.
            for running in (writer.copying, writer.building):
                if running is not None and not running.done():
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await running

    async def flush(self) -> None:
        if self.copying is not None:
            await self.copying
        self.copying = asyncio.create_task(self._copy(*self.replay.take()))

    async def settle(self) -> list[tuple[Any, Event | None, str]]:
        """Folds the events ``Replay`` deferred (the next step of a case closed and written),
        its cases read back from the rows written; those the live consumer would
        dead-letter, with the origin given to ``Replay.fold``."""
        if not self.replay.deferred:
            return []
        if self.copying is not None:
            await self.copying
            self.copying = None
        columns = ", ".join([*(f"r.{name}" for name in CASE_COLUMNS),
                             *(f"t.{name}" for name in PREVIOUS_STEP_COLUMNS)])
        cases = [[*row] for row in await self.connection.fetch(
            f"WITH recalled AS (DELETE FROM {SCHEMA}.cases WHERE case_id = ANY($1::uuid[]) "
            f"RETURNING *) SELECT {columns} FROM recalled r "
            f"LEFT JOIN {SCHEMA}.transitions t ON t.case_id = r.case_id "
            "AND t.version = r.version",
            sorted(self.replay.reviving))]
        rejected = self.replay.revive(cases)
        await self.flush()
        return rejected

    async def _copy(self, contacts: list[tuple[Any, ...]], transitions: list[tuple[Any, ...]],
                    processed: list[str], cases: list[list[Any]]) -> None:
        copy = self.connection.copy_records_to_table
        if contacts:
            await copy("contacts", schema_name=SCHEMA, columns=CONTACT_COLUMNS,
                       records=contacts)
        if transitions:
            await copy("transitions", schema_name=SCHEMA, columns=TRANSITION_COLUMNS,
                       records=transitions)
        if cases:  # closed, handed over by the fold
            await copy("cases", schema_name=SCHEMA, columns=CASE_COLUMNS, records=cases)
        if processed:
            # The guard of every event folded: the live consumer skips any delivered again.
            await copy(METRICS_EVENTS.processed_events.name, schema_name=SCHEMA,
                       columns=["consumer", "event_id"],
                       records=[(CONSUMER, event_id) for event_id in processed])

    async def _script(self, statements: Sequence[ExecutableDDLElement]) -> asyncio.Task[str]:
        """``statements`` sent to the server as one script, to be awaited once something else
        is done here meanwhile."""
        dialect = self.session.get_bind().dialect
        script: Callable[[str], Coroutine[Any, Any, str]] = self.connection.execute
        running = asyncio.create_task(script(";\n".join(
            str(statement.compile(dialect=dialect)) for statement in statements)))
        self.building = running
        await asyncio.sleep(0)  # sent
        return running

    async def finish(self) -> None:
        await self.flush()
        assert self.copying is not None
        await self.copying
        # The contacts whose case was given an agency (``assign_agency``), wherever in the log
        # the contact came: counted for that agency, as the live projection leaves them.
        contact_ids, agencies = self.replay.reassigned_contacts()
        if contact_ids:
            await self.connection.execute(
                f"UPDATE {SCHEMA}.contacts c SET agency = g.agency "
                "FROM unnest($1::uuid[], $2::text[]) AS g (complaint_id, agency) "
                "WHERE c.complaint_id = g.complaint_id", contact_ids, agencies)
        copy, counted = self.connection.copy_records_to_table, self.replay.tally
        await copy("cases", schema_name=SCHEMA, columns=CASE_COLUMNS,
                   records=self.replay.case_rows())
        if self.replay.assignments:
            await copy("assignments", schema_name=SCHEMA, columns=ASSIGNMENT_COLUMNS,
                       records=self.replay.assignments)
        # The server builds the facts' indexes (sent as one script) while the aggregate rows
        # are made here; each aggregate table's key and indexes are built from its rows while
        # the next table's rows are made.
        indexes = _secondary_indexes()
        aggregated = [i for i in indexes if str(i.table) in {f"{SCHEMA}.{t}" for t in tally.TABLES}]
        building = await self._script([CreateIndex(i) for i in indexes if i not in aggregated])
        daily = list(counted.daily_rows())
        await building
        await copy("daily_counts", schema_name=SCHEMA, columns=tally.DAILY_COLUMNS,
                   records=daily)
        building = await self._script(_keys_and_indexes(["daily_counts"], aggregated))
        periods, histograms = counted.period_rows(), counted.histogram_text()
        await building
        await copy("period_counts", schema_name=SCHEMA, columns=tally.PERIOD_COLUMNS,
                   records=periods)
        await self.connection.copy_to_table(
            "duration_histograms", schema_name=SCHEMA, columns=tally.HISTOGRAM_COLUMNS,
            source=io.BytesIO(histograms), format="text")
        await (await self._script(_keys_and_indexes(["period_counts", "duration_histograms"],
                                                     aggregated)))
        # No ANALYZE here (a tenth of the rebuild's time): the emptied tables' statistics say
        # "unknown", so the planner reads their sizes from the files until autovacuum, counting
        # every row written as a change, analyzes them within its next round.


# --- the database-backed log -------------------------------------------------------------------

async def _rebuild_from_database(database: Database, progress: ProgressReport,
                                 batch_size: int) -> RebuildResult:
    started = time.monotonic()
    ends: dict[str, int] = {}
    dead: list[dict[str, object]] = []
    rejected: list[tuple[Any, Event | None, str]] = []
    async with database.transaction() as session:
        await check_tables(session)
        replay = Replay(Tally(ZoneInfo(await office_timezone(session))))
        total = 0
        for topic in SUBSCRIPTION.topics:
            tables = DATABASE_LOGS[topic]
            while await outbox_sequence(session, tables):
                pass  # positions for every committed row, so the log's end is known
            outbox = tables.outbox
            ends[topic] = int((await session.execute(
                select(func.coalesce(func.max(outbox.c.position), 0)))).scalar_one())
            total += int((await session.execute(
                select(func.count()).select_from(outbox)
                .where(outbox.c.position <= ends[topic]))).scalar_one())
    progress.start(total)
    done = 0
    async with database.transaction() as session, Writer.opened(session, replay) as writer:
        for topic in SUBSCRIPTION.topics:
            outbox = DATABASE_LOGS[topic].outbox
            position = 0
            while position < ends[topic]:
                async with database.transaction() as reading:
                    rows = (await reading.execute(
                        select(outbox.c.position, cast(outbox.c.envelope, Text))
                        .where(outbox.c.position > position, outbox.c.position <= ends[topic])
                        .order_by(outbox.c.position).limit(batch_size))).all()
                if not rows:
                    break
                for _, envelope in rows:
                    error = replay.fold(envelope, (topic, envelope))
                    if error is not None:
                        rejected.append(((topic, envelope), *error))
                await writer.flush()
                position = int(rows[-1][0])
                done += len(rows)
                progress.update(done)
        rejected += await writer.settle()
        for (topic, envelope), event, reason in rejected:
            dead.append({"consumer": CONSUMER, "log": topic,
                         "event_id": event.id if event is not None else None,
                         "record": envelope, "error": reason})
        read = time.monotonic() - started
        await writer.finish()
        positions = METRICS_EVENTS.log_positions
        await session.execute(pg_insert(positions).values(
            [{"consumer": CONSUMER, "log": topic, "position": end}
             for topic, end in ends.items()]))
        if dead:
            await session.execute(METRICS_EVENTS.dead_letters.insert().values(dead))
    for letter in dead:
        logger.error("%s: %s event %s dead-lettered: %s", CONSUMER, letter["log"],
                     letter["event_id"], letter["error"])
    total_seconds = time.monotonic() - started
    return RebuildResult("database", done, total_seconds, len(dead), read, total_seconds - read)


# --- Kafka -------------------------------------------------------------------------------------

async def _rebuild_from_kafka(settings: Settings, bootstrap: str, database: Database,
                              progress: ProgressReport, batch_size: int) -> RebuildResult:
    started = time.monotonic()
    group = settings.group_prefix + CONSUMER
    topics = [settings.topic(t) for t in SUBSCRIPTION.topics]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="aduan-metrics-rebuild")
    await admin.start()
    try:
        async with database.transaction() as session:
            await check_tables(session)
            zone = ZoneInfo(await office_timezone(session))
        # The partitions' extent asked for while the group's coordinator is found (on a new
        # broker, elected first: a few tenths of a second).
        extent = asyncio.ensure_future(_extent(admin, bootstrap, topics))
        try:
            await refuse_if_active(admin, group)
            _, starts, ends = await extent
        finally:
            if not extent.done():
                extent.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await extent
            elif not extent.cancelled():
                extent.exception()  # retrieved: the refusal is the error raised
        cut = {tp: offset for tp, offset in starts.items() if offset > 0}
        if cut:
            raise RebuildRefused(
                "the log no longer starts at offset 0 (records removed by retention cannot be "
                "replayed): " + ", ".join(f"{tp.topic}[{tp.partition}] starts at {offset}"
                                          for tp, offset in sorted(cut.items())))
        total = sum(ends.values())
        progress.start(total)
        replay = Replay(Tally(zone))
        async with database.transaction() as session, \
                Writer.opened(session, replay) as writer:
            rejected = await _read_kafka(bootstrap, ends, replay, progress, batch_size, writer)
            read = time.monotonic() - started
            if rejected:  # dead-lettered as the metrics service would
                await _dead_letter(settings, bootstrap, database, rejected)
            # A metrics service started meanwhile would apply what is replayed here once more.
            await refuse_if_active(admin, group)
            await writer.finish()
        written = time.monotonic() - started - read
        # After the commit: were this to fail, the group would read from where it was, and
        # the processed-event guard just written would skip every event folded here.
        await _commit_offsets(bootstrap, group, ends)
        return RebuildResult("kafka", total, time.monotonic() - started, len(rejected),
                             read, written)
    finally:
        await admin.close()


Rejected = tuple[ConsumerRecord[bytes, bytes], Event | None, str]


async def _dead_letter(settings: Settings, bootstrap: str, database: Database,
                       rejected: list[Rejected]) -> None:
    publisher = KafkaPublisher(bootstrap, topic_prefix=settings.topic_prefix,
                               client_id="aduan-metrics-rebuild")
    runner = KafkaConsumerRunner(SUBSCRIPTION, database, bootstrap_servers=bootstrap,
                                 publisher=publisher, group_prefix=settings.group_prefix)
    try:
        for record, event, error in rejected:
            await runner.applier.dead(event, error, runner.dead_letter_for(record))
    finally:
        await publisher.close()


async def _read_kafka(bootstrap: str, ends: dict[TopicPartition, int], replay: Replay,
                      progress: ProgressReport, batch_size: int,
                      writer: Writer) -> list[Rejected]:
    """Folds every record before ``ends`` into ``replay``, partition by partition in order."""
    remaining = {tp for tp, end in ends.items() if end > 0}
    if not remaining:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="aduan-metrics-rebuild",
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
        # Never a silent jump to the log's new start (records removed by retention while
        # reading): the position is set explicitly below, and a position gone is an error.
        auto_offset_reset="none")
    await consumer.start()
    rejected: list[Rejected] = []
    done = 0
    fetched: asyncio.Queue[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] | None] = (
        asyncio.Queue(maxsize=2))
    reading: asyncio.Task[None] | None = None
    try:
        consumer.assign(sorted(remaining))
        await consumer.seek_to_beginning(*remaining)
        reading = asyncio.create_task(_read_ahead(consumer, ends, remaining, batch_size,
                                                  fetched))
        fold = replay.fold
        while (batches := await _next(fetched, reading)) is not None:
            for partition, records in batches.items():
                end = ends[partition]
                if records and records[-1].offset >= end:
                    # Written after the rebuild started: the live consumer's.
                    records = [record for record in records if record.offset < end]
                done += len(records)
                for first in range(0, len(records), _FOLDED_BETWEEN_TURNS):
                    for record in records[first:first + _FOLDED_BETWEEN_TURNS]:
                        value = record.value
                        error = fold(value if value is not None else b"", record)
                        if error is not None:
                            rejected.append((record, *error))
                    await asyncio.sleep(0)  # the next fetch is sent and its answer read
            await writer.flush()
            progress.update(done)
        await reading  # its error, if it stopped on one
    finally:
        if reading is not None and not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        elif reading is not None and not reading.cancelled():
            reading.exception()  # retrieved: the fold's own error is the one raised
        await consumer.stop()
    return rejected + await writer.settle()


# Records folded before the event loop is let run: aiokafka sends the next fetch and decodes
# its answer there, so it arrives while the fold goes on rather than after each batch.
_FOLDED_BETWEEN_TURNS = 200


async def _next(
        fetched: asyncio.Queue[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] | None],
        reading: asyncio.Task[None],
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] | None:
    """The next batches read ahead, or None once the reader is done, however it ended (its
    error is met awaiting it)."""
    if not fetched.empty():
        return fetched.get_nowait()
    getting = asyncio.ensure_future(fetched.get())
    await asyncio.wait({getting, reading}, return_when=asyncio.FIRST_COMPLETED)
    if getting.done():
        return getting.result()
    getting.cancel()
    return None


async def _read_ahead(
        consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int],
        remaining: set[TopicPartition], batch_size: int,
        fetched: asyncio.Queue[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] | None],
) -> None:
    """Puts the batches of records up to ``ends`` in ``fetched`` up to three batches ahead of
    the fold (two queued, one waiting to be; aiokafka fetches a partition again only once its
    records were taken), then ``None``. Should it stop on an error, the fold sees it done
    (``_next``) and meets the error awaiting it."""
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch_size)
        for partition in list(remaining):
            if await consumer.position(partition) >= ends[partition]:
                remaining.discard(partition)
                consumer.pause(partition)
        if batches:
            await fetched.put(batches)
    await fetched.put(None)


async def refuse_if_active(admin: AIOKafkaAdminClient, group: str) -> None:
    """Raises ``RebuildRefused`` while ``group`` has members (a metrics service is running)."""
    # A broker that never had a group elects its coordinator on the first question: asked
    # again for a while, as a consumer joining would. An election takes a moment: asked again
    # soon, without stamina's default jitter of up to a second added to each wait.
    async for attempt in stamina.retry_context(on=_COORDINATOR_PENDING, attempts=None,
                                               timeout=30.0, wait_initial=0.05,
                                               wait_jitter=0.05, wait_max=2.0):
        with attempt:
            groups = [described for response in await admin.describe_consumer_groups([group])
                      for described in response.to_object()["groups"]]
            pending = [d["error_code"] for d in groups
                       if for_code(d["error_code"]) in _COORDINATOR_PENDING]
            if pending:
                raise for_code(pending[0])()
    for described in groups:
        error, group_id = described["error_code"], described["group"]
        state, members = described["state"], described["members"]
        if error != 0:
            raise RebuildRefused(f"cannot tell whether the consumer group {group_id!r} "
                                 f"has members (Kafka error code {error})")
        if members:
            raise RebuildRefused(
                f"the consumer group {group_id!r} has {len(members)} active member(s) "
                f"(state {state}): stop every metrics service (`aduan serve metrics` or "
                f"`aduan serve`) before rebuilding")


async def _extent(admin: AIOKafkaAdminClient, bootstrap: str, topics: list[str]) -> tuple[
        list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Every partition of ``topics`` with its first and end offset, as of now."""
    existing = sorted(set(topics) & set(await admin.list_topics()))
    if not existing:
        return [], {}, {}
    partitions = sorted(TopicPartition(described["topic"], p["partition"])
                        for described in await admin.describe_topics(existing)
                        for p in described["partitions"])
    if not partitions:
        return [], {}, {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return partitions, dict(starts), dict(ends)
    finally:
        await consumer.stop()


async def _commit_offsets(bootstrap: str, group: str,
                          offsets: dict[TopicPartition, int]) -> None:
    """Commits ``offsets`` for ``group`` (which has no member): the live consumer goes on
    from the end of what was replayed."""
    if not offsets:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
