"""The rate limit tables (shared.ratelimit): GCRA's answers, a full table, processes sharing one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.problems import Problem
from shared.ratelimit import PROBE, WINDOW_NS, CallerTable, RateLimiter, RateTables

SECOND = 10**9


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * SECOND

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * SECOND)


def refused_for(limiter: RateLimiter, caller: str) -> int | None:
    """None when admitted, else the Retry-After (whole seconds) of its 429."""
    try:
        limiter.check(caller)
    except Problem as problem:
        if problem.status != 429:
            raise
        return int(problem.headers["Retry-After"])
    return None


@pytest.fixture
def table() -> Iterator[CallerTable]:
    table = CallerTable.private(1024)
    yield table
    table.close()


def test_a_minute_s_worth_at_once_then_one_each_interval(table: CallerTable) -> None:
    clock = Clock()
    limiter = RateLimiter(20, table, clock)  # one each 3 s, 20 at once
    assert [refused_for(limiter, "partner") for _ in range(21)] == [None] * 20 + [3]
    clock.advance(1.2)
    assert refused_for(limiter, "partner") == 2  # 1.8 s: rounded up
    clock.advance(1.79)
    assert refused_for(limiter, "partner") == 1  # 10 ms: never below one second
    clock.advance(0.01)
    assert refused_for(limiter, "partner") is None  # the token that came back
    assert refused_for(limiter, "partner") == 3
    assert refused_for(limiter, "another partner") is None  # each caller its own
    clock.advance(60)
    assert [refused_for(limiter, "partner") for _ in range(21)] == [None] * 20 + [3]


def test_a_refusal_costs_nothing_and_a_quiet_caller_refills_to_the_limit_only(
    table: CallerTable,
) -> None:
    clock = Clock()
    limiter = RateLimiter(10, table, clock)
    for _ in range(10):
        limiter.check("203.0.113.9")
    for _ in range(50):  # hammering while refused does not push the next admission away
        assert refused_for(limiter, "203.0.113.9") == 6
    clock.advance(6)
    assert refused_for(limiter, "203.0.113.9") is None
    clock.advance(3600)  # an hour away gives 10, not 600
    assert [refused_for(limiter, "203.0.113.9") for _ in range(11)] == [None] * 10 + [6]


def test_no_limit_counts_nothing(table: CallerTable) -> None:
    limiter = RateLimiter(0, table, Clock())
    for _ in range(10_000):
        limiter.check("partner")


def test_callers_whose_hashes_point_to_one_slot_each_keep_their_own(table: CallerTable) -> None:
    now, minute = 1_000 * SECOND, WINDOW_NS  # a limit of one a minute
    colliding = [7 + n * table.slots for n in range(1, PROBE + 1)]
    assert [table.admit(key, minute, now) for key in colliding] == [0] * PROBE
    assert all(table.admit(key, minute, now + SECOND) > 0 for key in colliding)
    # The table is full where they point: the newcomer is let through, with a slot of its own,
    # and the caller nearest a full allowance forgotten (let through, never refused wrongly).
    newcomer = 7 + (PROBE + 1) * table.slots
    assert table.admit(newcomer, minute, now + 2 * SECOND) == 0
    assert table.admit(newcomer, minute, now + 2 * SECOND) > 0
    assert all(table.admit(key, minute, now + 3 * SECOND) > 0 for key in colliding[1:])
    assert table.admit(colliding[0], minute, now + 3 * SECOND) == 0  # forgotten: admitted
    # Once their minute has passed, their slots are anybody's.
    later = now + 2 * WINDOW_NS
    others = [7 + n * table.slots for n in range(100, 100 + PROBE)]
    assert [table.admit(key, minute, later) for key in others] == [0] * PROBE
    assert all(table.admit(key, minute, later) > 0 for key in others)


def test_many_more_callers_than_slots_are_never_refused_wrongly() -> None:
    table = CallerTable.private(64)
    try:
        clock = Clock()
        limiter = RateLimiter(2, table, clock)
        callers = [f"198.51.100.{n}" for n in range(1_000)]
        for caller in callers:  # each one's first two requests within its minute
            assert refused_for(limiter, caller) is None
            assert refused_for(limiter, caller) is None
            assert refused_for(limiter, caller) == 30
            clock.advance(0.001)
    finally:
        table.close()


def test_a_caller_s_key_is_stable_and_keyed_by_the_table(tmp_path: Path) -> None:
    RateTables.create(tmp_path, 128)
    first, second = CallerTable.attach(tmp_path / "token"), CallerTable.attach(tmp_path / "token")
    other = CallerTable.attach(tmp_path / "address")
    try:
        assert first.key_of("partner") == second.key_of("partner") != 0
        assert first.key_of("partner") != other.key_of("partner")  # each table its own secret
        assert first.slots == 128
    finally:
        for table in (first, second, other):
            table.close()


def test_what_is_not_a_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"\0" * 4096)
    with pytest.raises(ValueError, match="not a rate limit table"):
        CallerTable.attach(tmp_path / "token")


# A process of its own, as a worker started again is: it attaches to the tables by their path.
_PROCESS = """
import sys
from pathlib import Path
from shared.problems import Problem
from shared.ratelimit import CallerTable, RateLimiter, RateTables

directory, caller, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if sys.argv[4] == "limiter":
    limiter = RateLimiter(3, RateTables.attach(directory).address)
    try:
        for _ in range(count):
            limiter.check(caller)
    except Problem:
        sys.exit(29)
else:  # race the other process at one instant: admitted exactly as many as allowed
    table = CallerTable.attach(directory / "token")
    key = table.key_of(caller)
    print(sum(table.admit(key, 60 * 10**9 // 4000, 10**12) == 0 for _ in range(count)))
"""


def _in_another_process(directory: Path, caller: str, count: int,
                        how: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _PROCESS, str(directory), caller, str(count),
                             how], stdout=subprocess.PIPE, text=True)


def test_a_process_started_later_counts_against_the_same_limits(tmp_path: Path) -> None:
    RateTables.create(tmp_path, 1024)
    # Three a minute: one each 20 s, longer than this test takes.
    assert _in_another_process(tmp_path, "192.0.2.1", 2, "limiter").wait(60) == 0
    tables = RateTables.attach(tmp_path)
    try:
        limiter = RateLimiter(3, tables.address)
        assert refused_for(limiter, "192.0.2.1") is None  # its 3rd
        assert refused_for(limiter, "192.0.2.1") is not None
        assert refused_for(limiter, "192.0.2.2") is None
        # ... and one started after that counts them too.
        assert _in_another_process(tmp_path, "192.0.2.1", 1, "limiter").wait(60) == 29
    finally:
        tables.close()


def test_processes_checking_at_once_admit_exactly_the_limit(tmp_path: Path) -> None:
    RateTables.create(tmp_path, 1024)
    racing = [_in_another_process(tmp_path, "partner", 3000, "race") for _ in range(2)]
    admitted = [int(process.communicate(timeout=120)[0]) for process in racing]
    assert sum(admitted) == 4000, admitted
