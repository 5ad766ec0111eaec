"""The one place where the log's SQL becomes PostgreSQL's, and where a database URL is read.

The log's parts, its migrations and its teammates' code write one SQL: SQLite's, kept to what
both databases share. ``translate`` rewrites the few differences for PostgreSQL:

========================================  ===============================================
SQLite (as written)                       PostgreSQL (as sent)
========================================  ===============================================
``?`` placeholders, any ``%``             ``%s``; ``%%`` if sent with parameters (psycopg's)
``INSERT OR IGNORE INTO t ...``           ``INSERT INTO t ... ON CONFLICT DO NOTHING``
``CREATE TABLE t (`` (implicit rowid)     ``CREATE TABLE t (rowid BIGINT GENERATED ... ,``:
                                          ``ORDER BY rowid`` (write order) works on both
``REAL`` / ``BLOB`` columns (any case)    ``DOUBLE PRECISION`` / ``BYTEA``
``json_each(x) [AS j]`` (``j.value``)     ``json_array_elements_text(CAST(x AS json)) AS j(value)``
``json_array(...)``                       ``json_build_array(...)`` (read back as text)
``julianday(x)``                          days since the epoch, from ``CAST(x AS timestamptz)``
``lower(hex(randomblob(16)))``            ``md5(random()::text || clock_timestamp()::text)``
========================================  ===============================================

``BEGIN IMMEDIATE``, ``PRAGMA user_version`` and the error classes are not SQL text: the
PostgreSQL database (``postgres.py``) gives those their equivalents. Comments are dropped
(a quote in a comment would otherwise look like a string); rewrites ignore case and never touch
a string literal or a quoted name.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


def is_url(location: object) -> bool:
    """Whether a log location is a PostgreSQL URL (``postgresql://`` or ``postgres://``), not a folder."""
    return isinstance(location, str) and location.strip().lower().startswith(SCHEMES)


def _split_password(url: str) -> tuple[str, str | None, str]:
    """``(scheme://user, password or None, @host...)`` of a URL, read from its raw text.

    A password is what lies between the first ``:`` after ``://`` and the LAST ``@``: so one that
    holds a raw ``#``, ``?``, ``/`` or ``@`` (libpq accepts ``#`` and ``?`` unencoded) is taken
    whole, where a URL parser would stop at the first of them and show the rest as the host, the
    path, the query or the fragment. Errs towards hiding more (a query holding ``@``), never less.
    """
    text = url.strip()
    start = text.find("://") + 3
    colon, at = text.find(":", start), text.rfind("@")
    if start < 3 or colon < 0 or at < colon or any(c in text[start:colon] for c in "@/?#"):
        return text, None, ""  # no "user:" before the host: no password in the authority
    return text[:colon], text[colon + 1 : at], text[at:]


def _is_password(parameter: str) -> bool:
    return unquote(parameter.partition("=")[0]).strip().lower() == "password"


def _redact_query(url: str, keep_password: bool) -> str:
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and (keep_password or not _is_password(p))]
    query = "&".join("password=***" if _is_password(p) else p for p in kept)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) shown as ``***``."""
    head, password, tail = _split_password(url)
    return _redact_query(head + (":***" if password is not None else "") + tail, keep_password=True)


def without_password(url: str) -> str:
    """``url`` with no password at all (libpq then finds one in ``PGPASSWORD`` or ``~/.pgpass``)."""
    head, _, tail = _split_password(url)
    return _redact_query(head + tail, keep_password=False)


def url_secrets(url: str) -> tuple[str, ...]:
    """Every text of the password a URL carries, as typed and percent-decoded, in the authority or a
    ``password=`` parameter, and as libpq itself reads it (to scrub from a driver's messages),
    longest first; empty if none."""
    typed = [p.partition("=")[2] for p in urlsplit(_split_password(url)[2][1:]).query.split("&") if _is_password(p)]
    typed += [p.partition("=")[2] for p in urlsplit(url.strip()).query.split("&") if _is_password(p)]
    in_authority = _split_password(url)[1]
    if in_authority:
        typed.append(in_authority)
    parsed = _libpq_password(url)
    if parsed:
        typed.append(parsed)
    forms = {form for text in typed for form in (text, unquote(text), unquote_plus(text)) if form}
    return tuple(sorted(forms, key=len, reverse=True))


def _libpq_password(url: str) -> str | None:
    """The password as libpq parses the URL (None: none, psycopg missing, or libpq refuses it)."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        password = conninfo_to_dict(url.strip()).get("password")
    except Exception:  # any refusal: the caller reports the URL as unreadable
        return None
    return None if password is None else str(password)


def ambiguous_password(url: str) -> bool:
    """Whether libpq would read the URL's password differently from what was typed (a raw ``/``,
    ``@`` or ``%`` in it): the connection would go to the wrong host, or a piece of the password
    would show in the driver's messages as a host or a port. Such a URL is refused before use."""
    password = _split_password(url)[1]
    if password is None:
        return False
    try:
        typed = unquote(password, errors="strict")
    except UnicodeDecodeError:
        return True
    return _libpq_password(url) != typed


# --- SQL ------------------------------------------------------------------------------------------
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?|%", re.S)
_QUOTED = re.compile("\ue000(\\d+)\ue001")  # a string literal or quoted name, set aside while rewriting
_CREATE_TABLE = re.compile(r"(?is)^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\(")
_DDL = re.compile(r"(?is)^\s*(CREATE|ALTER)\s")
_INSERT_OR_IGNORE = re.compile(r"(?is)^(\s*)INSERT\s+OR\s+IGNORE\s+INTO\b")
_JSON_EACH = re.compile(r"(?i)\bjson_each\(\s*([\w.]+)\s*\)(?:\s+AS\s+(\w+))?")
_JULIANDAY = re.compile(r"(?i)\bjulianday\(([^()]+)\)")
_RANDOM_ID = re.compile(r"(?i)\blower\(\s*hex\(\s*randomblob\(\s*16\s*\)\s*\)\s*\)")
_RETURNING = re.compile(r"(?is)\sRETURNING\s")


def _set_aside(sql: str, params: bool) -> tuple[str, list[str]]:
    """The statement's code with ``?`` -> ``%s`` (and ``%`` -> ``%%`` when it goes with parameters),
    comments dropped and each quoted text replaced by a marker; and the quoted texts (their ``%``
    doubled too when it goes with parameters: psycopg reads every ``%`` of such a statement)."""
    quoted: list[str] = []

    def one(match: re.Match) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%" if params else "%"
        if token.startswith(("--", "/*")):
            return ""
        quoted.append(token.replace("%", "%%") if params else token)
        return f"\ue000{len(quoted) - 1}\ue001"

    return _TOKENS.sub(one, sql), quoted


@functools.lru_cache(maxsize=2048)
def translate(sql: str, params: bool = False) -> str:
    """The PostgreSQL text of a statement of the log's SQL (the table in the module docstring).

    ``params``: whether the statement is sent with parameters. psycopg then reads every ``%`` as
    a placeholder's start, so each one (in a string literal too) is doubled; a statement sent
    without parameters goes as written. Rewrites ignore case and never touch quoted text."""
    text, quoted = _set_aside(sql, params)
    if _DDL.match(text):
        text = re.sub(r"(?i)\bREAL\b", "DOUBLE PRECISION", text)
        text = re.sub(r"(?i)\bBLOB\b", "BYTEA", text)
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
    text = _RANDOM_ID.sub("md5(random()::text || clock_timestamp()::text)", text)
    return _QUOTED.sub(lambda m: quoted[int(m.group(1))], text)
