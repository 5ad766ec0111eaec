"""A lab's requests in flight, and the quiet moments reconcile needs.

Reconciling adopts a listed voice that no take of the log names yet. While one of this lab's
create requests is in flight, the voice it is storing is such a voice, so a reconcile then
(the PromptBuilder's thread settling while a compare runs in the main thread) could adopt it
for the wrong take. :class:`InFlight` counts the requests (``request()``) and lets a reconcile
run only when none is in flight (``quiet()``), holding new requests back until it is done.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    """A counter of requests in flight and a gate for quiet sections (a readers/writer lock:
    requests are readers, a quiet section the writer, which new requests wait behind)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._quiet_owner: int | None = None  # the thread in a quiet section
        self._quiet_depth = 0
        self._quiet_waiting = 0

    @property
    def count(self) -> int:
        """How many requests are in flight now."""
        with self._cond:
            return self._count

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count one request in flight for the block (waits while a quiet section runs or waits)."""
        me = threading.get_ident()
        with self._cond:
            if self._quiet_owner != me:  # a quiet section's own thread never waits for itself
                self._cond.wait_for(lambda: self._quiet_owner is None and not self._quiet_waiting)
            self._count += 1
        try:
            yield
        finally:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Run the block once no request is in flight; new requests wait until it ends. Re-entrant."""
        me = threading.get_ident()
        with self._cond:
            if self._quiet_owner != me:
                self._quiet_waiting += 1
                try:
                    self._cond.wait_for(lambda: self._count == 0 and self._quiet_owner is None)
                finally:
                    self._quiet_waiting -= 1
                self._quiet_owner = me
            self._quiet_depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._quiet_depth -= 1
                if not self._quiet_depth:
                    self._quiet_owner = None
                self._cond.notify_all()
