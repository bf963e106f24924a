"""Getting a flush's audit rows into the database in as few round trips as possible.

- PostgreSQL with psycopg 3, batches of ``COPY_THRESHOLD`` rows or more: ``COPY ... FROM STDIN``,
  one stream instead of a pipelined statement per row (the largest single cost of an audited
  flush in the first profiles).
- Otherwise on psycopg, SQLite, MySQL and MariaDB: one statement in the driver's own parameter
  style, with the rows already in the form the driver takes (JSON as text, times as the
  database reads them), which skips SQLAlchemy's per-value bind processing.
- Any other driver, or a connection with a ``schema_translate_map`` (which neither of the above
  would follow): SQLAlchemy's own typed INSERT.

Every path runs on the flush's own connection, inside its transaction, and an error fails the
flush exactly like an INSERT would (as a SQLAlchemy ``DBAPIError``). ``tests/capture/test_writer.py``
checks that the paths store identical rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..documents import dumps
from ..models import audit_log_table, schema_is_current
from ..serialize import storable
from .limits import check_packets

__all__ = ["COPY_THRESHOLD", "can_copy", "copy_rows", "insert_rows"]

#: Batches at least this large use COPY where it is available; smaller ones an INSERT.
COPY_THRESHOLD = 8

_COLUMNS = [c.name for c in audit_log_table.columns]
_JSON_COLUMNS = frozenset({"before_state", "after_state", "changed_fields", "extra"})
_JSON_AT = tuple(i for i, name in enumerate(_COLUMNS) if name in _JSON_COLUMNS)
_TIMESTAMP_AT = _COLUMNS.index("timestamp")
#: the ULID columns, given as 16 bytes and written as the hex digits every backend takes
_ID_AT = (_COLUMNS.index("id"), _COLUMNS.index("transaction_id"))


def _copy_statement(connection: Connection, table: sa.Table, columns: Sequence[str]) -> str:
    preparer = connection.dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in columns)
    return f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"


def _values_of(timestamp: Any) -> Any:
    """A function turning one row into its values in column order, JSON documents as text and
    the time as ``timestamp`` gives it (computed once per distinct time)."""
    times: dict[Any, Any] = {}

    def values_of(row: dict[str, Any]) -> list[Any]:
        values = [row[name] for name in _COLUMNS]
        for i in _JSON_AT:
            if values[i] is not None:
                values[i] = dumps(values[i])
        for i in _ID_AT:
            if values[i] is not None:
                values[i] = values[i].hex()
        moment = values[_TIMESTAMP_AT]
        shown = times.get(moment)
        if shown is None:
            shown = times[moment] = timestamp(moment)
        values[_TIMESTAMP_AT] = shown
        return values

    return values_of


def copy_rows(
    connection: Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Stream ``rows`` (values in ``columns`` order, as COPY's text form takes them) into
    ``table`` with COPY on ``connection`` (see :func:`can_copy`); returns how many. The rows may
    be built as the stream goes: psycopg sends each buffer as it fills, and the server works on
    it while the next rows are made. An error is raised as a SQLAlchemy ``DBAPIError``."""
    statement = _copy_statement(connection, table, columns)
    dbapi_connection: Any = connection.connection.dbapi_connection
    written = 0
    try:
        with dbapi_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
    except connection.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement,
            None,
            exc,
            connection.dialect.loaded_dbapi.Error,
            dialect=connection.dialect,
        ) from exc
    return written


def can_copy(connection: Connection) -> bool:
    """psycopg 3, sync, and no ``schema_translate_map`` (which COPY would not follow)."""
    dialect = connection.dialect
    return (
        dialect.name == "postgresql"
        and dialect.driver == "psycopg"
        and not dialect.is_async
        and not connection.get_execution_options().get("schema_translate_map")
    )


def _same(moment: dt.datetime) -> dt.datetime:
    return moment


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _sqlite_text(moment: dt.datetime) -> str:
    """The text form of SQLAlchemy's DATETIME on SQLite, which reads and sorts it back."""
    return _naive_utc(moment).isoformat(" ", "microseconds")


#: ``INSERT INTO audit_log (...) VALUES (...)`` in each dialect's parameter style, and whether
#: its parameters are positional
_insert_sql: weakref.WeakKeyDictionary[Any, tuple[str, bool]] = weakref.WeakKeyDictionary()


def _driver_insert(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """The driver's own execute(many) with rows already in its form (JSON as text, times as it
    takes them), skipping SQLAlchemy's per-value bind processing: a third of an audited flush
    on SQLite, and most of the Python cost of a small flush's entry on PostgreSQL."""
    dialect = connection.dialect
    prepared = _insert_sql.get(dialect)
    if prepared is None:
        compiled = audit_log_table.insert().compile(dialect=dialect, column_keys=_COLUMNS)
        positional = compiled.positiontup is not None
        if positional and compiled.positiontup != _COLUMNS:  # pragma: no cover - never seen
            raise AssertionError(f"unexpected parameter order: {compiled.positiontup}")
        prepared = _insert_sql[dialect] = (str(compiled), positional)
    sql, positional = prepared
    values_of = _values_of(_TIMES.get(dialect.name, _naive_utc))
    values = [values_of(row) for row in rows]
    check_packets(connection, _COLUMNS, values)
    params: list[Any] = (
        [tuple(v) for v in values]
        if positional
        else [dict(zip(_COLUMNS, v, strict=True)) for v in values]
    )
    # One row (a web request's usual flush): execute(), not executemany(), which psycopg runs in
    # pipeline mode; entering and leaving it cost about 60 us per transaction on loopback.
    connection.exec_driver_sql(sql, params[0] if len(params) == 1 else params)


#: How each database takes the entry's time: SQLite as SQLAlchemy's DATETIME text, PostgreSQL
#: as the aware value, MySQL and MariaDB as naive UTC.
_TIMES = {"sqlite": _sqlite_text, "postgresql": _same}


def _driver_ready(connection: Connection) -> bool:
    """Drivers that take the rows as prepared here: SQLite's, MySQL and MariaDB's, psycopg (which
    sends the JSON text untyped, for the server to read as jsonb). Not under a
    ``schema_translate_map``, which a driver-level statement would not follow."""
    dialect = connection.dialect
    return (
        dialect.name in ("sqlite", "mysql", "mariadb")
        or (dialect.name == "postgresql" and dialect.driver == "psycopg")
    ) and not connection.get_execution_options().get("schema_translate_map")


_checked: weakref.WeakSet[Any] = weakref.WeakSet()


def _check_schema(connection: Connection) -> None:
    """Once per engine: the table's ids are of the current type (tables made before 0.2 are
    refused with the migration to run, rather than written wrongly)."""
    engine = connection.engine
    if engine not in _checked:
        schema_is_current(connection)
        _checked.add(engine)


def insert_rows(
    connection: Connection, rows: Iterable[dict[str, Any]], count: int | None = None
) -> int:
    """Insert complete ``audit_log`` rows (every column given) on ``connection``; returns how
    many. ``rows`` may be a lazy iterable of at most ``count`` rows (then COPY builds them as it
    streams); nothing else may run on ``connection`` while it is consumed."""
    _check_schema(connection)
    if count is None:
        rows = list(rows)
        count = len(rows)
    if count >= COPY_THRESHOLD and can_copy(connection):
        rows = iter(rows)
        first = next(rows, None)  # none at all (every change read back later): no empty COPY
        if first is None:
            return 0
        values_of = _values_of(_same)  # JSON as text: COPY's text form of jsonb
        return copy_rows(
            connection,
            audit_log_table,
            _COLUMNS,
            (values_of(row) for row in itertools.chain((first,), rows)),
        )
    batch = list(rows)
    if not batch:
        return 0
    if _driver_ready(connection):
        _driver_insert(connection, batch)
    else:  # SQLAlchemy's JSON type writes the documents
        for row in batch:
            for name in _JSON_COLUMNS:
                row[name] = storable(row[name])
        connection.execute(audit_log_table.insert(), batch)
    return len(batch)
