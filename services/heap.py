"""The collector set for a long-running server: what start-up built is not scanned again.

CPython's cyclic collector scans a generation whole, and the oldest generation holds everything
start-up made: modules, classes, the app and its routes, SQLAlchemy's and pydantic's caches
(some 160,000 objects in an intake worker). Each full collection walked all of them and found
nothing to free: measured in Kafka mode at 300 complaints a second, a full collection held an
intake worker's event loop 0.2-1.4 s (on a loaded machine) every 20-25 s, long enough for a
queue to stand and admission to refuse requests (shared/admission.py). ``gc.freeze`` moves
what exists after start-up out of the collector's sight: it is never freed anyway.

The young generation's threshold is raised too: a request's objects live across ``await`` for a
few milliseconds, and with the default 700 allocations they are promoted to older generations by
collections that run while they are still in use, only to be found dead there later at a
higher cost. Collections of the young generation stay short (a few thousand objects).
"""

from __future__ import annotations

import gc

# Allocations (less deallocations) between collections of the youngest generation, and
# collections of one generation between those of the next (CPython's defaults: 700, 10, 10).
THRESHOLDS = (20_000, 10, 10)


def share_with_forks() -> None:
    """Collects, then keeps everything still alive out of every later collection, before the
    process forks children that share its heap: a collection writes to each object it walks,
    which would copy, in every child, each page of what they share."""
    gc.collect()
    gc.freeze()


def settle() -> None:
    """Collects what start-up left behind, keeps everything still alive out of every later
    collection (as ``share_with_forks``), and sets the thresholds. Called once a server has
    started, before it serves."""
    share_with_forks()
    gc.set_threshold(*THRESHOLDS)
