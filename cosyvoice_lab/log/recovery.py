"""Stale pending takes: which ``pending`` rows were abandoned by their writer, and marking them.

A take is written ``pending`` before its request leaves (``TakeTable.start``); its outcome
updates the row. Opening a log marks ``pending`` rows ``interrupted`` only when their writer is
certainly gone: each pending row records the writing process (host name, pid, and its boot id +
start time, which survive pid reuse). On the same host the row is stale when that process no
longer runs — or when it is this very process and nothing holds the take's pending ``Take``
any more (a notebook cell interrupted before it recorded an outcome). A row written on another
host (a shared folder) is stale once it is older than ``stale_after_s`` (``STALE_PENDING_S``:
an hour, far beyond a create request's timeout and retries). A live writer's rows are never
touched; an outcome can still be recorded on an interrupted take.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from cosyvoice_lab.catalog import STALE_PENDING_S
from cosyvoice_lab.log.database import Database
from cosyvoice_lab.log.schema import takes
from cosyvoice_lab.take import Take, now_utc, parse_iso

# Takes this process has sent and not yet settled, whichever ExperimentLog object sent them:
# a second log object opened in the same kernel must not mark them interrupted. Weak values:
# while a request is in flight its caller holds the pending Take; once the caller is gone
# without an outcome (a cell interrupted mid-request) the entry vanishes and the take is stale.
_IN_FLIGHT: weakref.WeakValueDictionary[str, Take] = weakref.WeakValueDictionary()
_IN_FLIGHT_LOCK = threading.Lock()


def hold(take: Take) -> None:
    """Count ``take`` as in flight in this process while its ``Take`` object is held."""
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT[take.take_id] = take


def release(take_id: str) -> None:
    """The take's outcome is recorded (or its start failed): it is no longer in flight."""
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.pop(take_id, None)


def in_flight() -> set[str]:
    """The ids of this process's takes still in flight."""
    with _IN_FLIGHT_LOCK:
        return set(_IN_FLIGHT.keys())


class Recovery:
    """Marks a log's abandoned ``pending`` takes ``interrupted`` (the rule is in the module docstring).

    Args:
        db: the log's database.
        stale_after_s: age after which a pending take written on another host is abandoned.
    """

    def __init__(self, db: Database, *, stale_after_s: float = STALE_PENDING_S) -> None:
        self._db = db
        self.stale_after = timedelta(seconds=stale_after_s)

    def interrupt_stale(self) -> int:
        """Mark abandoned ``pending`` takes ``interrupted``; returns how many were marked."""
        t = takes.c
        rows = self._db.query(
            select(t.take_id, t.writer_host, t.writer_pid, t.writer_start, t.started_at).where(t.status == "pending")
        )
        if not rows:
            return 0
        live = in_flight()  # read after the rows: a take settled meanwhile is caught below
        me, now = writer_identity(), now_utc()
        stale = [r for r in rows if is_stale(r, me=me, live=live, now=now, stale_after=self.stale_after)]
        if not stale:
            return 0
        with self._db.transaction() as conn:
            for take_id, host, pid, *_ in stale:
                conn.execute(
                    update(takes)
                    .where(takes.c.take_id == take_id, takes.c.status == "pending")
                    .values(status="interrupted", error_code="Interrupted", error_message=abandoned_message(host, pid))
                )
        return len(stale)


def abandoned_message(host: str | None, pid: int | None) -> str:
    """The error message of a take whose writer ended before recording an outcome."""
    if host:
        return (
            f"the process that sent it (pid {pid} on {host}) ended before recording an outcome; "
            f"a voice may have been created: list voices to check"
        )
    return "no outcome was recorded; a voice may have been created: list voices to check"


# --- who is writing -------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


_BOOT_ID = _read("/proc/sys/kernel/random/boot_id") or ""
_HAVE_PROC = os.path.exists("/proc/self/stat")


def process_start(pid: int) -> str | None:
    """An identity of process ``pid`` that survives pid reuse: ``<boot id>:<start ticks>``.

    None when it cannot be known (no /proc) or the process does not exist.
    """
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    return f"{_BOOT_ID}:{fields[19]}"  # field 22, counted from the state (field 3)


_IDENTITY: dict[int, tuple[str, int, str]] = {}


def writer_identity() -> tuple[str, int, str]:
    """(host name, pid, process start) of this process, recorded on each pending row."""
    pid = os.getpid()  # keyed by pid: a forked child is another writer
    if pid not in _IDENTITY:
        _IDENTITY[pid] = (socket.gethostname(), pid, process_start(pid) or "")
    return _IDENTITY[pid]


def process_alive(pid: int, start: str) -> bool:
    """Whether the process that wrote ``(pid, start)`` on this host still runs."""
    if _HAVE_PROC:
        return process_start(pid) == start if start else os.path.exists(f"/proc/{pid}")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(row: tuple, *, me: tuple[str, int, str], live: set[str], now: datetime, stale_after: timedelta) -> bool:
    """Whether a pending row ``(take_id, writer_host, writer_pid, writer_start, started_at)``
    was abandoned by its writer.

    This host: stale when the writing process is gone (pid reuse is caught by the start
    identity), or when it is this very process and the take is not among its requests in
    flight (``live``: the takes whose pending Take object is still held, e.g. by a cell that
    was interrupted mid-request and so never recorded an outcome). Another host (or a row
    with no writer): stale once ``started_at`` is older than ``stale_after``.
    """
    take_id, host, pid, start, started_at = row
    if host and host == me[0] and pid is not None:
        if (pid, start) == (me[1], me[2]):
            return take_id not in live
        return not process_alive(pid, start)
    started = parse_iso(started_at)
    return started is None or now - started > stale_after  # started_at is NOT NULL: never None
