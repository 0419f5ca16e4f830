"""Ends what BI logins keep running past their limit, whatever they ``SET``.

A BI login (``aduan bi-user create``) starts its sessions with ``statement_timeout`` and
``idle_in_transaction_session_timeout``, but any session may ``SET`` them to 0: PostgreSQL has
no way to forbid it. So the metrics service looks at the sessions of the members of
``aduan_bi`` every ``bi_watchdog_interval_seconds`` and, with ``bi_query_limit_seconds`` as the
limit:

- cancels a statement running longer than the limit (the client gets SQLSTATE 57014, "canceling
  statement due to user request", as from ``statement_timeout``), and ends the session when
  that same statement still runs at the next look (a cancel is only a request);
- ends a session idle in a transaction older than the limit, or in one older than twice the
  limit at all: an open transaction holds back vacuum, and the queue of notifications every
  listening process of aduan shares;
- ends a session holding or awaiting an advisory lock: aduan's relays and sequencers take turns
  with advisory locks (``shared/outbox.py``), which PostgreSQL lets every role take, so one held
  by a BI session would stall them;
- ends an idle session found blocked writing to its client at two looks in a row: one that
  ``LISTEN``s and reads nothing. Notifications are queued until every listener has taken them,
  so such a session lets anyone's ``NOTIFY`` fill the queue on disk (8 GB, ~50 MB a second),
  after which every ``NOTIFY`` fails, aduan's own included.

Each is logged. Seeing other roles' statements and signalling their sessions takes a superuser
(the embedded server's) or membership in ``pg_read_all_stats`` and ``pg_signal_backend``; the
service says so at start-up when it has neither (docs/bi.md).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.db import Database

logger = logging.getLogger(__name__)

BI_ROLE = "aduan_bi"
# Sessions of direct members of aduan_bi that one of the rules above applies to.
_OVERDUE = """
    SELECT a.pid, a.usename, a.state, a.query_start, a.state_change, a.wait_event,
           left(a.query, 200) AS query,
           extract(epoch FROM now() - a.query_start)::float8 AS running,
           extract(epoch FROM now() - a.xact_start)::float8 AS open_for,
           EXISTS (SELECT FROM pg_locks l
                   WHERE l.pid = a.pid AND l.locktype = 'advisory') AS advisory
    FROM pg_stat_activity a
    WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
      AND a.usesysid IN (SELECT m.member FROM pg_auth_members m
                         JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = $1)
      AND (a.state = 'active' AND a.query_start < now() - make_interval(secs => $2)
           OR a.state LIKE 'idle in transaction%'
              AND a.xact_start < now() - make_interval(secs => $2)
           OR a.xact_start < now() - make_interval(secs => 2 * $2)
           OR a.state = 'idle' AND a.wait_event = 'ClientWrite'
           OR EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'))"""
_PRIVILEGES = """
    SELECT r.rolsuper, pg_has_role(r.oid, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
           pg_has_role(r.oid, 'pg_signal_backend', 'USAGE') AS signal_backend
    FROM pg_roles r WHERE r.rolname = current_user"""


@dataclass(frozen=True)
class Ended:
    """What the watchdog did to one session, and why."""
    pid: int
    user: str
    action: str  # "cancelled" or "terminated"
    reason: str
    query: str


async def missing_privileges(connection: asyncpg.Connection) -> str | None:
    """What the operator must grant for the watchdog to work (None when nothing)."""
    row = await connection.fetchrow(_PRIVILEGES)
    if row is None or row["rolsuper"] or (row["read_all_stats"] and row["signal_backend"]):
        return None
    user = await connection.fetchval("SELECT current_user")
    return (f"BI logins' queries that SET statement_timeout away cannot be ended: {user} is "
            "neither a superuser nor a member of pg_read_all_stats and pg_signal_backend. As "
            f"an administrator, run GRANT pg_read_all_stats, pg_signal_backend TO \"{user}\"; "
            "(docs/bi.md)")


class BiWatchdog:
    def __init__(self, database: Database, *, limit_seconds: float,
                 interval_seconds: float) -> None:
        self.database = database
        self.limit_seconds = limit_seconds
        self.interval_seconds = interval_seconds
        # Statements already cancelled once, by session: (pid) -> its query_start.
        self._cancelled: dict[int, datetime] = {}
        # Idle sessions seen blocked writing to their client, by session: pid -> state_change.
        self._stuck: dict[int, datetime] = {}
        self._told: str | None = None

    async def look(self) -> list[Ended]:
        """One look: cancels and ends what overran, and says what it did."""
        async with self.database.autocommit() as connection:
            missing = await missing_privileges(connection)
            if missing != self._told:
                if missing:
                    logger.warning("aduan: %s", missing)
                self._told = missing
            rows = await connection.fetch(_OVERDUE, BI_ROLE, self.limit_seconds)
            ended = [await self._end(connection, row) for row in rows]
        seen = {row["pid"] for row in rows}
        self._cancelled = {p: s for p, s in self._cancelled.items() if p in seen}
        self._stuck = {p: s for p, s in self._stuck.items() if p in seen}
        done = [e for e in ended if e is not None]
        for e in done:
            logger.warning("BI login %s: %s session %d (%s): %s", e.user, e.action, e.pid,
                           e.reason, e.query)
        return done

    async def _end(self, connection: asyncpg.Connection,
                   row: asyncpg.Record) -> Ended | None:
        pid, limit = row["pid"], self.limit_seconds
        running, open_for = row["running"] or 0.0, row["open_for"] or 0.0
        if row["advisory"]:
            action, reason = "terminated", "it took an advisory lock"
        elif row["state"] == "idle" and row["wait_event"] == "ClientWrite":
            if self._stuck.get(pid) != row["state_change"]:
                self._stuck[pid] = row["state_change"]
                return None  # a moment's wait, perhaps: seen again at the next look, it is not
            action, reason = "terminated", "idle, its client reads nothing sent to it " \
                                           "(notifications queue up behind it)"
        elif row["state"] == "active" and running > limit:
            if self._cancelled.get(pid) != row["query_start"]:
                self._cancelled[pid] = row["query_start"]
                return await self._signal(connection, "pg_cancel_backend", row, "cancelled",
                                          f"statement running {running:.0f} s > {limit:g} s")
            action, reason = "terminated", f"statement still running {running:.0f} s after " \
                                           "its cancel"
        else:
            action, reason = "terminated", f"transaction open {open_for:.0f} s > {limit:g} s"
        return await self._signal(connection, "pg_terminate_backend", row, action, reason)

    async def _signal(self, connection: asyncpg.Connection, function: str,
                      row: asyncpg.Record, action: str, reason: str) -> Ended | None:
        try:
            # ``function`` is one of two names written above, never input.
            if not await connection.fetchval(f"SELECT {function}($1)", row["pid"]):
                return None  # the session ended meanwhile
        except asyncpg.InsufficientPrivilegeError as exc:
            logger.warning("BI login %s: session %d (%s) could not be %s: %s", row["usename"],
                           row["pid"], reason, action, exc)
            return None
        return Ended(pid=row["pid"], user=row["usename"], action=action, reason=reason,
                     query=row["query"] or "")

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except Exception as exc:
                logger.warning("BI watchdog: look failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.interval_seconds)
