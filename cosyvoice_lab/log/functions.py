"""The few SQL functions the log needs that SQLite and PostgreSQL spell differently, as SQLAlchemy
Core constructs compiled per dialect (``sqlalchemy.ext.compiler``): no SQL text is rewritten.

- ``pack(a, b, ...)``: the arguments in one text cell, read back by ``unpack``. SQLite
  ``json_array(...)``; PostgreSQL ``CAST(ARRAY[CAST(a AS TEXT), ...] AS TEXT)``, an array literal
  (half the server's time of ``json_build_array``, which looks up each argument's type on every
  row: 0.3 s of 0.6 s at 100,000 rows).
- ``json_has(col, value)``: whether a JSON array of texts holds ``value``. SQLite ``EXISTS
  (SELECT 1 FROM json_each(col) WHERE value = ?)``; PostgreSQL ``CAST(col AS jsonb) @>
  jsonb_build_array(?)``.
- ``seconds_between(later, earlier)``: seconds between two ISO 8601 UTC texts. SQLite
  ``(julianday(later) - julianday(earlier)) * 86400.0``; PostgreSQL ``EXTRACT(EPOCH FROM ...)``.

``dialect_insert`` picks SQLite's or PostgreSQL's ``insert`` (both speak ``on_conflict_do_*``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Boolean, Float, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class pack(FunctionElement):
    """Several columns in one text cell (``unpack`` reads it back): one cell per row instead of
    one per column, for columns with few distinct values."""

    type = Text()
    name = "pack"
    inherit_cache = True


@compiles(pack, "sqlite")
def _pack_sqlite(element: pack, compiler: Any, **kw: Any) -> str:
    return f"json_array({compiler.process(element.clauses, **kw)})"


@compiles(pack, "postgresql")
def _pack_pg(element: pack, compiler: Any, **kw: Any) -> str:
    texts = ", ".join(f"CAST({compiler.process(c, **kw)} AS TEXT)" for c in element.clauses)
    return f"CAST(ARRAY[{texts}] AS TEXT)"


# An element of a PostgreSQL array literal: quoted (backslash escapes inside) or bare.
_ELEMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|([^,]+)')
_ESCAPED = re.compile(r"\\(.)")


def unpack(cell: str) -> list[Any]:
    """The values ``pack`` put in a cell, in order: None for NULL; from SQLite a JSON array (its
    numbers as numbers), from PostgreSQL an array literal of texts (numbers as their text:
    the reader converts them)."""
    if cell.startswith("["):
        return json.loads(cell)
    values: list[Any] = []
    for quoted, bare in _ELEMENT.findall(cell[1:-1]):
        if bare:  # array_out quotes any element that could be mistaken for NULL, so a bare NULL is one
            values.append(None if bare == "NULL" else bare)
        else:
            values.append(_ESCAPED.sub(r"\1", quoted))
    return values


class json_has(FunctionElement):
    """Whether a column holding a JSON array of texts (or NULL) holds ``value``."""

    type = Boolean()
    name = "json_has"
    inherit_cache = True


@compiles(json_has, "sqlite")
def _has_sqlite(element: json_has, compiler: Any, **kw: Any) -> str:
    column, value = list(element.clauses)
    column_sql, value_sql = compiler.process(column, **kw), compiler.process(value, **kw)
    return f"EXISTS (SELECT 1 FROM json_each({column_sql}) WHERE value = {value_sql})"


@compiles(json_has, "postgresql")
def _has_pg(element: json_has, compiler: Any, **kw: Any) -> str:
    column, value = list(element.clauses)
    return (
        f"(CAST({compiler.process(column, **kw)} AS jsonb) @> "
        f"jsonb_build_array(CAST({compiler.process(value, **kw)} AS TEXT)))"
    )


class seconds_between(FunctionElement):
    """Seconds from ``earlier`` to ``later``, two ISO 8601 UTC texts (to the millisecond)."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_pg(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    # EXTRACT answers NUMERIC: cast to the float the column holds
    return (
        f"CAST(EXTRACT(EPOCH FROM (CAST({later} AS timestamptz) - CAST({earlier} AS timestamptz))) AS DOUBLE PRECISION)"
    )


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` for the database at hand (SQLite's and PostgreSQL's
    ``insert`` speak the same ``on_conflict_do_nothing`` / ``on_conflict_do_update``)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
