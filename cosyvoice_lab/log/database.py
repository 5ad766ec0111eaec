"""The experiment log's database: a SQLAlchemy engine on a folder's SQLite file or a PostgreSQL URL.

``Database`` knows nothing of takes. It runs Core statements (``query``: one statement, its
own transaction; ``transaction``: a write transaction holding the log's write lock) and turns
every driver failure, of either database, into one ``LogError`` naming the log and saying what
to do (``error``). The schema is ``schema.py``'s, built by ``migrations``.

SQLite (``folder/log.sqlite3``), through SQLAlchemy's pysqlite dialect, as its documentation's
recipe for explicit transactions: the driver's own transaction handling is off
(``isolation_level=None``) and the ``begin`` event emits ``BEGIN IMMEDIATE`` for a write
transaction (it waits for other writers up front: no write begun from a stale snapshot), nothing
for a lone statement (atomic on its own, no read snapshot kept between statements). Each new
connection checks the file is a log (another program's database is left untouched), switches it
to WAL once, and sets ``synchronous=NORMAL`` and the busy timeout. SQLite answers some steps busy
at once, without its busy handler (``BusyWait``): those are retried.

PostgreSQL (``postgresql+psycopg``; the URL goes to libpq unchanged): lone statements run in
autocommit (one round trip); a write transaction takes the log's advisory lock
(``pg_advisory_xact_lock``), as ``BEGIN IMMEDIATE`` takes SQLite's write lock, waiting at most
``busy_timeout_s`` (``lock_timeout``).

A server that goes away (restarted, a network blip) is waited for (``Reconnect``): a statement or
the start of a transaction whose connection was lost runs again on a new connection once the
server answers, with backoff, for up to ``RECONNECT_TIMEOUT_S``, saying in the log that it waits.
Only what is safe to repeat is repeated: reads, the prepared writes (keyed by take id: an outcome's
UPDATE applies only to an open take, a pending row's INSERT that finds its id taken was the lost
attempt's commit), a transaction's start (nothing done yet), and whole transactions given as a
function (``write``) whose caller says they are. A lost connection is never reused: pooled ones are
checked before they are lent (``pool_pre_ping``).

Both: a pool per engine (connections kept do not grow with thread pools; a burst beyond the pool
opens extra connections that close when returned), shared by threads; a forked child drops its
parent's connections without closing them (``dispose(close=False)``) and opens its own. The
prepared write statements (``run``) use one pooled connection each writer thread holds
(``_Held``), given back when the thread has ended.
"""

from __future__ import annotations

import logging
import operator
import os
import random
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from cosyvoice_lab.catalog import LOG_BUSY_TIMEOUT_S
from cosyvoice_lab.errors import LogError
from cosyvoice_lab.log.arrow_reader import ArrowReader
from cosyvoice_lab.log.urls import is_url, redact_url, url_secrets, without_password

DB_NAME = "log.sqlite3"
# The advisory lock every write transaction on PostgreSQL takes (one per database: the log's "write lock").
WRITE_LOCK = 0x636F7379  # "cosy"
POOL_SIZE = 5  # connections kept per log; more threads at once open extra ones, closed when returned
RECONNECT_TIMEOUT_S = 30.0  # how long a statement waits for a lost database server to answer again

log = logging.getLogger(__name__)

T = TypeVar("T")

# The URL (with its password) of each database opened in this process, by its URL without the
# password: what a pickled ``Database`` (which holds no password) reconnects with.
_OPENED: dict[str, str] = {}
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_HELDS: weakref.WeakSet[_Held] = weakref.WeakSet()


def _after_fork() -> None:
    # The child must not use (nor close) connections its parent holds: drop them from the pools,
    # and keep those its threads held referenced for good (``_Held``: never closed here).
    for engine in list(_ENGINES):
        engine.dispose(close=False)
    for held in list(_HELDS):
        held.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind a SQLAlchemy one."""
    return getattr(exc, "orig", None) or exc


def is_busy(exc: BaseException) -> bool:
    """Whether a SQLite error means "another connection holds a lock" (SQLITE_BUSY/LOCKED, any
    extended code): the statement did nothing, so running it again is safe."""
    exc = _driver_error(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class BusyWait:
    """Runs a step again while SQLite answers busy, with jittered backoff, for up to ``timeout_s``.

    SQLite's own busy handler waits only where it can: some steps answer busy at once, without
    waiting at all (switching a new database to WAL while another process does the same, a write
    begun from a stale read snapshot). Those are retried here; a wait longer than
    ``say_after_s`` is said once in the log, so a process waiting for a slow neighbour says so
    instead of looking hung. ``elapsed`` is how long the last ``run`` waited (for error texts).
    """

    def __init__(self, timeout_s: float, *, what: str, say_after_s: float = 2.0) -> None:
        self.timeout_s, self.what, self.say_after_s = timeout_s, what, say_after_s
        self.elapsed = 0.0

    def run(self, step: Callable[[], T]) -> T:
        start = time.monotonic()
        pause, said = 0.002, False
        while True:
            try:
                return step()
            except (sqlite3.Error, DBAPIError) as exc:
                self.elapsed = time.monotonic() - start
                if not is_busy(exc) or self.elapsed >= self.timeout_s:
                    raise
                if not said and self.elapsed >= self.say_after_s:
                    log.warning("waiting for another writer of %s (%.0f s so far)", self.what, self.elapsed)
                    said = True
            time.sleep(min(pause * random.uniform(0.5, 1.5), max(0.0, self.timeout_s - self.elapsed)))
            pause = min(pause * 2, 0.25)


# A connection the server refused for who is asking or what they ask for: waiting changes nothing,
# so it is said at once. psycopg reports these without a SQLSTATE, as it does a lost connection.
_REFUSALS = ("fe_sendauth", "authentication failed", "pg_hba.conf", "does not exist", "permission denied")


def is_disconnect(exc: BaseException) -> bool:
    """Whether a failure means the connection to the database server was lost or could not be made
    (a restart, a server not yet up): SQLAlchemy's own verdict (``connection_invalidated``), or
    psycopg's connection errors (no SQLSTATE: refused, closed; class 08: connection exception;
    57P01-57P03: the server shutting down or starting up). Not a connection the server refused to
    this login (no or a wrong password, no such database or role): that is said at once."""
    driver = _driver_error(exc)
    if any(words in str(driver) for words in _REFUSALS):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not type(driver).__module__.startswith("psycopg"):
        return False
    import psycopg

    if isinstance(driver, psycopg.InterfaceError):  # "the connection is closed"
        return True
    if not isinstance(driver, psycopg.OperationalError):
        return False
    state = getattr(driver, "sqlstate", None)
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _is_duplicate(exc: BaseException) -> bool:
    """A unique or primary key violation, of either database."""
    driver = _driver_error(exc)
    if isinstance(driver, sqlite3.IntegrityError):
        return "UNIQUE" in str(driver)
    return getattr(driver, "sqlstate", None) == "23505"


class Reconnect:
    """Runs a step again while the database server cannot be reached, with jittered backoff, for up
    to ``timeout_s``: the step must be safe to repeat (its lost attempt did nothing, or doing it
    again changes nothing). Says once in the log that it waits, and when the server is back.
    ``on_lost`` runs after each lost attempt (e.g. to drop a held connection)."""

    def __init__(self, timeout_s: float, *, what: str) -> None:
        self.timeout_s, self.what = timeout_s, what
        self.lost = False  # an attempt was cut off (its outcome may be unknown)

    def run(
        self, step: Callable[[], T], on_lost: Callable[[], None] | None = None, *, failed: BaseException | None = None
    ) -> T:
        """``step()`` until it answers; ``failed``: how an attempt already made ended (taken as
        the first attempt's outcome, so a caller can try once without this object's cost)."""
        start, pause = time.monotonic(), 0.05
        while True:
            try:
                if failed is not None:
                    exc, failed = failed, None
                    raise exc
                found = step()
            except Exception as exc:
                waited = time.monotonic() - start
                if not is_disconnect(exc) or waited >= self.timeout_s:
                    raise
                if on_lost is not None:
                    on_lost()
                if not self.lost:
                    log.warning(
                        "lost the connection to %s; waiting for the log's database to answer again (up to %g s)",
                        self.what,
                        self.timeout_s,
                    )
                self.lost = True
                time.sleep(min(pause * random.uniform(0.5, 1.5), max(0.0, self.timeout_s - waited)))
                pause = min(pause * 2, 1.0)
                continue
            if self.lost:
                log.warning("the log's database %s answers again after %.1f s", self.what, time.monotonic() - start)
            return found


class Prepared:
    """A Core statement compiled once per dialect, run on the driver's own cursor with positional
    parameters: the write path's statements (a take's pending row, its outcome), which run
    thousands of times and whose SQLAlchemy execution (cache key, parameter processing) would
    cost more than the statement itself. The SQL is SQLAlchemy's, never written by hand."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def sql(self, dialect: Any) -> str:
        """The statement's text in ``dialect`` (SQLite's ``?`` or psycopg's ``%s`` style)."""
        return self.compiled(dialect.name).sql

    def compiled(self, name: str) -> _Compiled:
        """The statement compiled for the dialect named ``name`` (``sqlite`` or ``postgresql``)."""
        found = self._compiled.get(name)
        if found is None:
            if name == "sqlite":
                from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

                dialect: Any = SQLiteDialect_pysqlite(paramstyle="qmark")
            else:
                from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

                dialect = PGDialect_psycopg(paramstyle="format")
            found = self._compiled[name] = _Compiled(self.statement.compile(dialect=dialect))
        return found

    def params(self, dialect: Any, values: dict) -> tuple:
        """``values`` (by name) as the tuple the statement's positional parameters take."""
        return self.compiled(dialect.name).params(values)


class _Compiled:
    """A statement's text with positional parameters, how to take them from a dict (by name, in
    C: ``itemgetter``), and whether it returns rows (a RETURNING clause, a SELECT)."""

    __slots__ = ("names", "params", "returns_rows", "sql")

    def __init__(self, compiled: Any) -> None:
        self.sql: str = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        getter = operator.itemgetter(*self.names) if self.names else (lambda _: ())
        self.params: Callable[[dict], tuple] = (lambda v: (getter(v),)) if len(self.names) == 1 else getter
        dml = compiled.isinsert or compiled.isupdate or compiled.isdelete
        self.returns_rows = bool(compiled.effective_returning) if dml else True


class _Held:
    """One pooled connection per writer thread, kept for the prepared statements (``Database.run``)
    instead of a checkout and return per statement, in autocommit (each statement its own
    transaction; never lent to ``transaction``).

    Thread pools come and go: when a thread takes one, those of threads that have ended go back to
    the pool (which keeps ``POOL_SIZE`` and closes the rest), so connections do not grow with
    successive pools. A forked child never uses (nor closes) its parent's: it takes its own."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[threading.Thread, Any, int]] = []
        _HELDS.add(self)

    def forget(self) -> None:
        """In a forked child: the parent's connections are parked, never used nor closed."""
        _INHERITED.extend(c for _, c, _ in self._open)
        self._open = []
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def executor(self, engine: Engine, postgres: bool) -> Any:
        """What runs this thread's statements: the held sqlite3 connection (its ``execute`` makes
        and drops a cursor in C) or one psycopg cursor kept with the held connection."""
        local = self._local
        executor = getattr(local, "executor", None)
        if executor is not None and local.pid == os.getpid() and local.raw.dbapi_connection is not None:
            return executor
        driver = self.get(engine, postgres).driver_connection
        local.executor = driver.cursor() if postgres else driver
        return local.executor

    def get(self, engine: Engine, postgres: bool) -> Any:
        raw = getattr(self._local, "raw", None)
        pid = os.getpid()
        if raw is not None and self._local.pid == pid and raw.dbapi_connection is not None:
            return raw
        self._local.executor = None
        raw = engine.raw_connection()
        if postgres:  # one round trip per statement; this connection runs nothing else
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        self._local.raw, self._local.pid = raw, pid
        with self._lock:
            ended = [c for t, c, p in self._open if p == pid and not t.is_alive()]
            self._open = [(t, c, p) for t, c, p in self._open if p != pid or t.is_alive()]
            self._open.append((threading.current_thread(), raw, pid))
        for old in ended:
            _give_back(old, postgres)
        return raw

    def drop(self, postgres: bool) -> None:
        """Give this thread's connection back (after a failure: the next statement takes a fresh one)."""
        raw = getattr(self._local, "raw", None)
        self._local.raw = self._local.executor = None
        if raw is None or self._local.pid != os.getpid():
            return
        with self._lock:
            self._open = [(t, c, p) for t, c, p in self._open if c is not raw]
        try:
            raw.invalidate()
        except Exception:
            pass

    def count(self) -> int:
        with self._lock:
            return sum(1 for _, _, p in self._open if p == os.getpid())

    def close(self, postgres: bool) -> None:
        pid = os.getpid()
        with self._lock:
            mine = [c for _, c, p in self._open if p == pid]
            _INHERITED.extend(c for _, c, p in self._open if p != pid)  # a parent's: never closed here
            self._open = []
        for raw in mine:
            _give_back(raw, postgres)


# Connections a forked child inherited held by its parent's threads: kept referenced, never
# closed nor returned (closing would end the parent's session).
_INHERITED: list[Any] = []


def _give_back(raw: Any, postgres: bool) -> None:
    try:
        if postgres and not raw.driver_connection.closed:
            raw.driver_connection.autocommit = False  # as the pool lends it to a transaction
        raw.close()
    except Exception:
        pass


class Database:
    """A log's database: ``folder/log.sqlite3`` (a folder) or a ``postgresql://`` URL.

    Args:
        location: the log folder (created if missing; may hold other files), or a PostgreSQL URL
            (libpq's; the database must exist).
        busy_timeout_s: how long a write waits for another writer before failing.
        reconnect_timeout_s: how long a statement waits for a lost database server to answer again.

    Pickling (a take read from the log holds this object, to load its audio): the pickle holds a
    URL *without* its password. Unpickled in this process or a child forked after the log was
    opened here, it takes the password this process was given for that URL; elsewhere libpq's own
    sources (``PGPASSWORD``, ``~/.pgpass``) supply it, or the login fails on first use.

    Raises:
        LogError: the folder cannot be created or written, or the database path is not a file.
    """

    def __init__(
        self,
        location: str | os.PathLike,
        *,
        busy_timeout_s: float = LOG_BUSY_TIMEOUT_S,
        reconnect_timeout_s: float = RECONNECT_TIMEOUT_S,
    ) -> None:
        self.busy_timeout_s, self.reconnect_timeout_s = busy_timeout_s, reconnect_timeout_s
        self.closed = False
        self._lock = threading.Lock()
        self.path: Path | str
        if is_url(location):
            self.kind = "PostgreSQL"
            self._url = str(location).strip()
            self.path = redact_url(self._url)  # what errors and reprs name: never the password
            if without_password(self._url) != self._url:
                _OPENED[without_password(self._url)] = self._url
            self._secrets = url_secrets(self._url)
            self.folder: Path | None = None
            self.engine = self._postgres_engine()
            self._lone = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self.kind = "SQLite"
            self._url = ""
            self._secrets = ()
            self.folder = Path(location).expanduser().absolute()
            self.path = self.folder / DB_NAME
            _prepare_folder(self.folder, self.path)
            self.engine = self._sqlite_engine()
            self._lone = self.engine.execution_options(log_begin=None)
        self._held = _Held()
        self._postgres = self.kind == "PostgreSQL"
        self._arrow = (
            ArrowReader(self._url, connect_timeout_s=busy_timeout_s, secrets=self._secrets) if self._postgres else None
        )
        self._dialect = self.engine.dialect.name
        self._what = str(self.path)
        _ENGINES.add(self.engine)

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    def __getstate__(self) -> dict:
        location = without_password(self._url) if self._url else str(self.folder)
        return {"location": location, "busy_timeout_s": self.busy_timeout_s, "reconnect_s": self.reconnect_timeout_s}

    def __setstate__(self, state: dict) -> None:
        location = _OPENED.get(state["location"], state["location"])
        reconnect = state.get("reconnect_s", RECONNECT_TIMEOUT_S)
        self.__init__(location, busy_timeout_s=state["busy_timeout_s"], reconnect_timeout_s=reconnect)  # type: ignore[misc]

    @property
    def open_connections(self) -> int:
        """How many connections the pool holds open (idle or in use)."""
        pool = self.engine.pool
        return pool.checkedin() + pool.checkedout() if isinstance(pool, QueuePool) else 0

    # --- engines ------------------------------------------------------------------------------
    def _sqlite_engine(self) -> Engine:
        engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"timeout": self.busy_timeout_s, "check_same_thread": False},
            poolclass=QueuePool,
            pool_size=POOL_SIZE,
            max_overflow=-1,
            # No rollback on each return: a connection is lent either in autocommit (no transaction
            # to end) or to ``transaction``, which always commits or rolls back (and SQLAlchemy's
            # Connection.close rolls back one left open). It is a third of a lone statement's cost.
            pool_reset_on_return=None,
        )
        path, timeout = self.path, self.busy_timeout_s

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are ours (the ``begin`` event below)
            BusyWait(timeout, what=str(path)).run(lambda: _open(dbapi_conn, Path(path)))
            # In WAL mode NORMAL never loses a commit to a crashed process, only (the last few)
            # to a power cut, and never corrupts: FULL would fsync every take, 10x slower.
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            # Reading the DataFrame of a big log straight from the page cache saves a copy.
            dbapi_conn.execute("PRAGMA mmap_size=268435456")

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("log_begin", "BEGIN IMMEDIATE")
            if mode:
                conn.exec_driver_sql(mode)

        return engine

    def _postgres_engine(self) -> Engine:
        import psycopg  # loaded only for a database log

        url, timeout = self._url, self.busy_timeout_s

        def connect() -> Any:
            return psycopg.connect(
                url,
                connect_timeout=max(1, int(timeout)),
                options=f"-c lock_timeout={max(1, int(timeout * 1000))} -c TimeZone=UTC",
                application_name="cosyvoice-lab",
            )

        return create_engine(
            "postgresql+psycopg://",
            creator=connect,
            poolclass=QueuePool,
            pool_size=POOL_SIZE,
            max_overflow=-1,
            pool_pre_ping=True,  # a connection a restarted server dropped is replaced before it is lent
        )

    # --- errors ---------------------------------------------------------------------------------
    def error(self, exc: BaseException, waited_s: float | None = None) -> LogError:
        """The LogError for a driver failure of either database, naming the log (never its
        password) and saying what to do (``waited_s``: how long a busy step was retried)."""
        driver = _driver_error(exc)
        text = str(driver).strip().splitlines()[0] if str(driver).strip() else type(driver).__name__
        for secret in self._secrets:  # longest first: each form of the password
            text = text.replace(secret, "***")
        if self.kind == "SQLite":
            return self._sqlite_error(driver, text, waited_s)
        import psycopg

        if isinstance(driver, psycopg.errors.LockNotAvailable):  # lock_timeout: busy_timeout_s passed
            waited = f"waited {self.busy_timeout_s:g} s"
            return LogError(self.path, f"another writer held the log too long ({waited}; database is locked ({text}))")
        if isinstance(driver, psycopg.OperationalError):
            return LogError(
                self.path,
                f"cannot reach the log's database (unable to open the database ({text})); "
                "is the server up and the URL right?",
            )
        return LogError(self.path, text)

    def _sqlite_error(self, driver: BaseException, text: str, waited_s: float | None) -> LogError:
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return LogError(self.path, f"is not a SQLite database or is corrupt ({text}); it was left untouched")
        if "readonly" in text or "unable to open" in text:
            return LogError(self.path, f"cannot be written ({text}); is the folder read-only?")
        if is_busy(driver):
            waited = f"waited {waited_s:.1f} s" if waited_s is not None else f"waited up to {self.busy_timeout_s:g} s"
            return LogError(self.path, f"another writer held the log too long ({waited}; {text})")
        return LogError(self.path, text)

    @contextmanager
    def errors(self, waiting: BusyWait | None = None) -> Iterator[None]:
        """Driver failures inside the block raised as ``LogError`` (see ``error``)."""
        try:
            yield
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise self.error(exc, waiting.elapsed if waiting and waiting.elapsed else None) from None
        except Exception as exc:
            if _is_driver_error(exc):
                raise self.error(exc) from None
            raise

    # --- statements -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise LogError(self.path, "this ExperimentLog is closed")

    def _reconnect(self) -> Reconnect:
        return Reconnect(self.reconnect_timeout_s, what=self._what)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction holding the log's write lock (SQLite's ``BEGIN IMMEDIATE``,
        PostgreSQL's advisory lock): yields the connection; commits when the block ends, rolls
        back if it raises. Its start waits for a lost database server (``Reconnect``); a
        connection lost inside the block fails it (see ``write`` for a transaction run again).

        Raises:
            LogError: a database failure (the transaction was rolled back).
        """
        self._check_open()
        waiting = BusyWait(self.busy_timeout_s, what=str(self.path))
        with self.errors(waiting), self._transaction(waiting) as conn:
            yield conn

    def write(self, body: Callable[[Connection], T]) -> T:
        """``body(conn)`` in one write transaction (as ``transaction``); returns what it returns.
        When the connection is lost before the commit is known, the whole transaction runs again
        once the server answers (``Reconnect``), so ``body`` must be safe to repeat: give the same
        outcome when its lost attempt did commit (e.g. find the row it inserted itself).

        Raises:
            LogError: a database failure (the transaction was rolled back).
        """
        self._check_open()
        waiting = BusyWait(self.busy_timeout_s, what=str(self.path))

        def attempt() -> T:
            with self._transaction(waiting) as conn:
                return body(conn)

        with self.errors(waiting):
            return self._reconnect().run(attempt)

    @contextmanager
    def _transaction(self, waiting: BusyWait) -> Iterator[Connection]:
        """``transaction`` with the driver's errors as they are."""
        conn = self._reconnect().run(lambda: self._begin(waiting))
        try:
            yield conn
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # a dead connection: the server rolled back already
                pass
            raise
        finally:
            try:
                conn.close()
            except Exception:
                pass

    def _begin(self, waiting: BusyWait) -> Connection:
        """A connection in a write transaction holding the write lock (nothing done yet: safe to repeat)."""
        conn = self.engine.connect()
        try:
            waiting.run(conn.begin)
            if self.kind == "PostgreSQL":
                conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK)))
        except BaseException:
            try:
                conn.close()
            except Exception:
                pass
            raise
        return conn

    def connect(self) -> Connection:
        """A connection for reads and lone statements (each its own transaction); close it after use.

        Raises:
            LogError: the log is closed.
        """
        self._check_open()
        return self._lone.connect()

    def query(self, statement: Any, params: Any = None) -> list[Any]:
        """Run one statement (a Core statement, or SQL text with ``:name`` parameters) as its own
        transaction and return its rows (none for a statement without a result). A statement
        whose connection was lost runs again once the server answers: reads and writes that are
        safe to repeat only (an upsert, an update to fixed values); others go through ``write``.

        Raises:
            LogError: a database failure.
        """
        return self._query(statement, params, _rows)

    def rows(self, statement: Any, params: Any = None) -> list[tuple]:
        """``query`` for a SELECT of many rows read by position (a DataFrame's, a list of takes):
        the driver's own tuples when no selected column's type converts what the driver returns
        (SQLAlchemy's ``Row`` per row is about a tenth of a 100k-row DataFrame's time), else
        SQLAlchemy's rows.

        Raises:
            LogError: a database failure.
        """
        return self._query(statement, params, lambda result: _driver_rows(result, statement))

    def arrow(self, statement: Any) -> Any:
        """A SELECT's rows as a ``pyarrow.Table`` read in C, or None where that cannot be had
        (SQLite; PostgreSQL without ADBC's driver; any failure of that path, which then says
        nothing: run the statement with ``rows``, whose errors and waits for a lost server are
        the log's). See ``arrow_reader``.

        Raises:
            LogError: the log is closed.
        """
        self._check_open()
        return None if self._arrow is None else self._arrow.read(statement)

    def _query(self, statement: Any, params: Any, fetch: Callable[[Any], list[Any]]) -> list[Any]:
        self._check_open()
        if isinstance(statement, str):
            statement = text(statement)
        waiting = BusyWait(self.busy_timeout_s, what=str(self.path))

        def attempt() -> list[Any]:
            with self._lone.connect() as conn:
                # busy: the statement did nothing, so it is safe to run again
                return waiting.run(lambda: fetch(conn.execute(statement, params)))

        with self.errors(waiting):
            return self._reconnect().run(attempt)  # lost: reads and idempotent writes only (see above)

    def run(self, prepared: Prepared, params: dict) -> list[tuple]:
        """Run a prepared statement as its own transaction (autocommit) on this thread's held
        connection (``_Held``: sqlite3's execute shortcut, or the psycopg cursor kept with it);
        returns its rows (none for a statement without a result). A step SQLite answers busy did
        nothing and is run again (``BusyWait``). A lost connection is replaced and the statement
        run again (``Reconnect``): the prepared statements are safe to repeat (an INSERT keyed by a
        fresh id, whose repeat finding the id taken means the lost attempt committed; an UPDATE of
        open takes only).

        Raises:
            LogError: a database failure.
        """
        if self.closed:
            self._check_open()
        postgres = self._postgres
        compiled = prepared.compiled(self._dialect)
        sql, values = compiled.sql, compiled.params(params)
        # The first attempt as it runs nearly always (no waiter, reconnector nor closure made):
        # what follows a failure is ``_run_again``'s.
        try:
            executor = self._held.executor(self.engine, postgres)
        except Exception as exc:  # no connection to be had (e.g. the server is down): nothing to drop
            return self._run_again(prepared, compiled, values, failed=exc)
        try:
            if postgres:
                executor.execute(sql, values)
                return executor.fetchall() if compiled.returns_rows else []
            return executor.execute(sql, values).fetchall()
        except BaseException as exc:
            if not postgres and is_busy(exc):  # did nothing: run again on the same connection
                return self._run_again(prepared, compiled, values)
            self._held.drop(postgres)  # a broken or interrupted connection is never reused
            return self._run_again(prepared, compiled, values, failed=exc)

    def _run_again(
        self, prepared: Prepared, compiled: _Compiled, values: tuple, failed: BaseException | None = None
    ) -> list[tuple]:
        """``run`` after its first attempt failed: a busy SQLite step waited for (``BusyWait``), a
        lost connection replaced and the statement run again (``Reconnect``; ``failed``: the first
        attempt's failure, its held connection dropped already), any other failure as ``LogError``."""
        postgres, sql = self._postgres, compiled.sql
        waiting = BusyWait(self.busy_timeout_s, what=self._what)
        reconnect = self._reconnect()

        def attempt() -> list[tuple]:
            executor = self._held.executor(self.engine, postgres)
            try:
                if postgres:
                    executor.execute(sql, values)
                    return executor.fetchall() if compiled.returns_rows else []
                try:
                    return executor.execute(sql, values).fetchall()
                except sqlite3.Error as exc:
                    if not is_busy(exc):
                        raise
                    return waiting.run(lambda: executor.execute(sql, values).fetchall())
            except BaseException as exc:
                self._held.drop(postgres)  # a broken or interrupted connection is never reused
                if reconnect.lost and prepared.statement.is_insert and _is_duplicate(exc):
                    return []  # its key is fresh (a take id): the attempt cut off committed it
                raise

        with self.errors(waiting):
            return reconnect.run(attempt, failed=failed)

    def check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (on PostgreSQL: that the tables answer); returns ``'ok'``.

        Raises:
            LogError: the database is damaged (the message lists what SQLite found).
        """
        if self.kind == "PostgreSQL":
            self.query(select(func.count()).select_from(text("takes")))
            return "ok"
        found = [row[0] for row in self.query("PRAGMA integrity_check")]
        if found != ["ok"]:
            raise LogError(self.path, "integrity check failed: " + "; ".join(found[:10]))
        return "ok"

    def close(self) -> None:
        """Close every connection this object opened (safe to call twice)."""
        with self._lock:
            self.closed = True
        self._held.close(self.kind == "PostgreSQL")
        if self._arrow is not None:
            self._arrow.close()
        self.engine.dispose()


def _rows(result: Any) -> list[Any]:
    return result.fetchall() if result.returns_rows else []


def _driver_rows(result: Any, statement: Any) -> list[Any]:
    """``result``'s rows as the driver's cursor gives them, when that is what SQLAlchemy would
    give (no column of ``statement`` has a result processor for the type the driver reports)."""
    if not result.returns_rows:
        return []
    columns = getattr(statement, "selected_columns", None)
    cursor, dialect = result.context.cursor, result.context.dialect
    description = cursor.description or ()
    if columns is None or len(columns) != len(description):
        return result.fetchall()
    for column, described in zip(columns, description, strict=True):
        if column.type.dialect_impl(dialect).result_processor(dialect, described[1]) is not None:
            return result.fetchall()
    rows = cursor.fetchall()
    result.close()
    return rows


def _is_driver_error(exc: BaseException) -> bool:
    """A psycopg error raised outside SQLAlchemy (e.g. while connecting through ``creator``)."""
    return type(exc).__module__.startswith("psycopg")


def _prepare_folder(folder: Path, db: Path) -> None:
    """Create the folder if needed and prove it writable, with errors naming the path."""
    if folder.exists() and not folder.is_dir():
        raise LogError(folder, "is a file, not a folder; give the log a folder of its own")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise LogError(folder, f"cannot write the log folder ({exc.strerror or exc}); is it read-only?") from exc
    if db.exists() and not db.is_file():
        raise LogError(db, "is not a file; the log database must be a SQLite file")


def _open(conn: sqlite3.Connection, path: Path) -> None:
    """Check the file is a log (or new), then switch it to WAL once: a log already in WAL mode
    keeps it, and another process switching a new log at the same moment answers busy at once
    (no busy handler), which the caller retries."""
    _check_ours(conn, path)  # before WAL: a file that is not ours is never changed
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"database is locked (journal mode stayed {mode})")


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse another program's SQLite database, reading only (no journal mode set yet).

    Ours is empty (a new log) or carries a schema version (``PRAGMA user_version``, which
    ``migrations`` keeps equal to the Alembic revision's number); one with tables and no version
    is someone else's. A file that is not SQLite at all fails the first read (``Database.error``).

    Raises:
        LogError: the database has tables but no log schema version.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0]:
        return
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    # read again: a process creating this log may have committed its tables and version meanwhile
    if tables and not conn.execute("PRAGMA user_version").fetchone()[0]:
        raise LogError(
            path,
            "is a SQLite database but not a cosyvoice_lab experiment log "
            "(it has tables and no log schema version); it was left untouched",
        )
