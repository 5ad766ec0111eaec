"""The one place where the log's SQL becomes PostgreSQL's, and where a database URL is read.

The log's parts, its migrations and its teammates' code write one SQL: SQLite's, kept to what
both databases share. ``translate`` rewrites the few differences for PostgreSQL:

========================================  ===============================================
SQLite (as written)                       PostgreSQL (as sent)
========================================  ===============================================
``?`` placeholders, a literal ``%``       ``%s``, ``%%`` (psycopg's paramstyle)
``INSERT OR IGNORE INTO t ...``           ``INSERT INTO t ... ON CONFLICT DO NOTHING``
``CREATE TABLE t (`` (implicit rowid)     ``CREATE TABLE t (rowid BIGINT GENERATED ... ,``:
                                          ``ORDER BY rowid`` (write order) works on both
``REAL`` / ``BLOB`` columns               ``DOUBLE PRECISION`` / ``BYTEA``
``json_each(x) [AS j]`` (``j.value``)     ``json_array_elements_text(CAST(x AS json)) AS j(value)``
``json_array(...)``                       ``json_build_array(...)`` (read back as text)
``julianday(x)``                          days since the epoch, from ``CAST(x AS timestamptz)``
``lower(hex(randomblob(16)))``            ``md5(random()::text || clock_timestamp()::text)``
========================================  ===============================================

``BEGIN IMMEDIATE``, ``PRAGMA user_version`` and the error classes are not SQL text: the
PostgreSQL database (``postgres.py``) gives those their equivalents. Comments are dropped
(a quote in a comment would otherwise look like a string).
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


def is_url(location: object) -> bool:
    """Whether a log location is a PostgreSQL URL (``postgresql://`` or ``postgres://``), not a folder."""
    return isinstance(location, str) and location.strip().lower().startswith(SCHEMES)


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) shown as ``***``."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str) -> str | None:
    """The password a URL carries (to scrub it from a driver's messages), or None."""
    try:
        return urlsplit(url.strip()).password
    except ValueError:
        return None


# --- SQL ------------------------------------------------------------------------------------------
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?|%", re.S)
_CREATE_TABLE = re.compile(r"(?is)^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\(")
_DDL = re.compile(r"(?is)^\s*(CREATE|ALTER)\s")
_INSERT_OR_IGNORE = re.compile(r"(?is)^(\s*)INSERT\s+OR\s+IGNORE\s+INTO\b")
_JSON_EACH = re.compile(r"(?i)\bjson_each\(\s*([\w.]+)\s*\)(?:\s+AS\s+(\w+))?")
_JULIANDAY = re.compile(r"(?i)\bjulianday\(([^()]+)\)")
_RETURNING = re.compile(r"(?is)\sRETURNING\s")


def _placeholders(sql: str) -> str:
    """``?`` -> ``%s`` and ``%`` -> ``%%`` outside strings; comments dropped."""

    def one(match: re.Match) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return "" if token.startswith(("--", "/*")) else token

    return _TOKENS.sub(one, sql)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The PostgreSQL text of a statement of the log's SQL (the table in the module docstring)."""
    text = _placeholders(sql)
    if _DDL.match(text):
        text = re.sub(r"\bREAL\b", "DOUBLE PRECISION", text)
        text = re.sub(r"\bBLOB\b", "BYTEA", text)
        text = _CREATE_TABLE.sub(lambda m: f"{m.group(0)}\n    rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,", text)
    if _INSERT_OR_IGNORE.match(text):
        text = _INSERT_OR_IGNORE.sub(r"\1INSERT INTO", text)
        returning = _RETURNING.search(text)
        at = returning.start() if returning else len(text.rstrip())
        text = f"{text[:at]} ON CONFLICT DO NOTHING{text[at:]}"
    text = _JSON_EACH.sub(
        lambda m: f"json_array_elements_text(CAST({m.group(1)} AS json)) AS {m.group(2) or 'j_'}(value)", text
    )
    text = re.sub(r"(?i)\bjson_array\(", "json_build_array(", text)
    text = _JULIANDAY.sub(lambda m: f"(EXTRACT(EPOCH FROM CAST({m.group(1)} AS timestamptz)) / 86400.0)", text)
    return text.replace("lower(hex(randomblob(16)))", "md5(random()::text || clock_timestamp()::text)")
