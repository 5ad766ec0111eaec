"""A PostgreSQL log's big reads straight into Arrow, through ADBC's libpq driver
(``adbc-driver-postgresql``, in the ``postgres`` extra): the server sends the rows as binary
COPY and the driver decodes them into Arrow columns in C, with no Python object per cell (the
takes DataFrame of 100,000 takes: psycopg's ``fetchall`` and the conversion of its cells cost
about a second of client CPU).

Only a shortcut: ``read`` answers None whenever it cannot answer (the driver is not installed, a
statement it does not take, the server gone), and the caller then runs the statement its usual
way (``Database.rows``), which waits for a lost server (``Reconnect``) and says what went wrong
(``Database.error``). So a failure here never reaches the user, and neither does its text (which
could name the connection): the log's outage behaviour and its errors stay the database's.

Connections: opened lazily with the log's own URL (libpq's; a password from the URL,
``PGPASSWORD`` or ``~/.pgpass`` as libpq finds it), the same connect timeout and
``application_name`` as the log's psycopg connections, in autocommit (no snapshot kept between
reads); kept idle for the next read (opening one costs a login: 0.2-0.8 s), up to ``IDLE``; one
per concurrent reader. A connection that failed is closed; a forked child never uses nor closes its parent's.
A statement the driver refuses (not a lost connection) turns the shortcut off for this log.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)
IDLE = 2  # connections kept idle for the next reads (more readers at once open more, closed after)

# Connections a forked child inherited: kept referenced, never closed (that would end the parent's session).
_INHERITED: list[Any] = []


def driver() -> Any:
    """ADBC's PostgreSQL DB-API module, or None when the driver is not installed."""
    try:
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError:
        return None
    return dbapi


class ArrowReader:
    """Runs SELECTs on a PostgreSQL URL and returns their rows as a ``pyarrow.Table`` (``read``).

    Args:
        url: the log's libpq URL (with or without a password).
        connect_timeout_s: libpq's ``connect_timeout``.
        secrets: every form of the URL's password (``urls.url_secrets``), scrubbed from what is logged.
    """

    def __init__(self, url: str, *, connect_timeout_s: float, secrets: tuple[str, ...] = ()) -> None:
        self._url, self._timeout, self._secrets = url, max(1, int(connect_timeout_s)), secrets
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._closed = False
        self.enabled = True  # off for good once the driver refuses a statement without parameters
        self.with_params = True  # off for good once it refuses one with (ADBC < 1.2 binds none in a SELECT)

    def __repr__(self) -> str:
        return f"ArrowReader(enabled={self.enabled}, with_params={self.with_params})"

    def read(self, statement: Any) -> Any:
        """``statement``'s rows as an Arrow table (columns named and typed as selected), or None
        when this reader cannot give them (see the module's docstring)."""
        if not self.enabled:
            return None
        dbapi = driver()
        if dbapi is None:
            self.enabled = False
            return None
        try:
            sql, params = _compiled(statement)
        except Exception as exc:  # a construct this path cannot render: the usual path runs it
            log.debug("not read through ADBC (%s)", self._scrub(exc))
            return None
        if params and not self.with_params:
            return None
        conn = None
        try:
            conn = self._take(dbapi)
            with conn.cursor() as cursor:
                cursor.execute(sql, params or None)
                table = cursor.fetch_arrow_table()
        except Exception as exc:
            if conn is not None:
                _close(conn)
            if not _is_connection_failure(exc):
                self._off(exc, bool(params))
            else:
                log.debug("reading through ADBC failed (%s); reading the usual way", self._scrub(exc))
            return None
        self._give_back(conn)
        return table

    def _take(self, dbapi: Any) -> Any:
        with self._lock:
            self._forget_if_forked()
            if self._idle:
                return self._idle.pop()
        from psycopg.conninfo import make_conninfo  # a PostgreSQL log has psycopg

        conninfo = make_conninfo(self._url, connect_timeout=self._timeout, application_name="cosyvoice-lab")
        return dbapi.connect(conninfo, autocommit=True)

    def _give_back(self, conn: Any) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < IDLE:
                self._idle.append(conn)
                return
        _close(conn)

    def _forget_if_forked(self) -> None:
        if self._pid != os.getpid():
            _INHERITED.extend(self._idle)
            self._idle, self._pid = [], os.getpid()

    def _off(self, exc: BaseException, with_params: bool) -> None:
        if with_params:
            self.with_params = False
        else:
            self.enabled = False
        what = "with parameters " if with_params else ""
        log.debug("reading statements %sthrough ADBC turned off for this log (%s)", what, self._scrub(exc))

    def _scrub(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        """Close the idle connections (those of this process)."""
        with self._lock:
            self._forget_if_forked()
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            _close(conn)


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _is_connection_failure(exc: BaseException) -> bool:
    """Whether an ADBC failure is the connection's (not reached, lost): worth trying again next time."""
    from adbc_driver_manager import AdbcStatusCode

    status = getattr(exc, "status_code", None)
    return status in (AdbcStatusCode.IO, AdbcStatusCode.UNAUTHENTICATED, AdbcStatusCode.TIMEOUT) or (
        getattr(exc, "sqlstate", None) or ""
    ).startswith(("08", "57P"))


@functools.cache
def _dialect() -> Any:
    """PostgreSQL's dialect with libpq's own ``$n`` placeholders (made once)."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    return PGDialect_psycopg(paramstyle="numeric_dollar")


def _compiled(statement: Any) -> tuple[str, tuple]:
    """``statement`` as PostgreSQL SQL with ``$n`` parameters (libpq's own), and their values."""
    compiled = statement.compile(dialect=_dialect(), compile_kwargs={"render_postcompile": True})
    params = compiled.params
    return str(compiled), tuple(params[name] for name in compiled.positiontup or ())
