"""Getting a flush's audit rows into the database in as few round trips as possible.

On PostgreSQL with psycopg 3 a batch goes through ``COPY ... FROM STDIN``: one stream instead of a
pipelined statement per row, which the profile showed as the largest single cost of an audited
flush. Everywhere else it is one executemany INSERT (PyMySQL and the SQLite driver batch it well),
on SQLite and MariaDB with the values already in the driver's form.
Either way it runs on the flush's own connection, inside its transaction, and an error fails the
flush exactly like an INSERT would (as a SQLAlchemy ``DBAPIError``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import audit_log_table
from .serialize import encode_value

__all__ = ["COPY_THRESHOLD", "insert_rows"]

#: Batches at least this large use COPY where it is available; smaller ones an INSERT.
COPY_THRESHOLD = 8

_COLUMNS = [c.name for c in audit_log_table.columns]
_JSON_COLUMNS = frozenset({"before_state", "after_state", "changed_fields", "extra"})
_dumps = functools.partial(json.dumps, default=encode_value, separators=(",", ":"))


def _copy_statement(connection: Connection) -> str:
    preparer = connection.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in _COLUMNS)
    return f"COPY {preparer.format_table(audit_log_table)} ({columns}) FROM STDIN"


def _copy(connection: Connection, rows: list[dict[str, Any]]) -> None:
    from psycopg.types.json import Jsonb

    statement = _copy_statement(connection)
    dbapi_connection: Any = connection.connection.dbapi_connection
    try:
        with dbapi_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        Jsonb(row[name], dumps=_dumps)
                        if name in _JSON_COLUMNS and row[name] is not None
                        else row[name]
                        for name in _COLUMNS
                    ]
                )
    except connection.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            statement,
            None,
            exc,
            connection.dialect.loaded_dbapi.Error,
            dialect=connection.dialect,
        ) from exc


def _can_copy(connection: Connection) -> bool:
    """psycopg 3, sync, and no ``schema_translate_map`` (which COPY would not follow)."""
    dialect = connection.dialect
    return (
        dialect.name == "postgresql"
        and dialect.driver == "psycopg"
        and not dialect.is_async
        and not connection.get_execution_options().get("schema_translate_map")
    )


#: ``audit_log`` with untyped columns: rows already in the driver's form skip SQLAlchemy's
#: per-value bind processing (JSON, the id and time type decorators), a third of an audited
#: flush on SQLite.
_untyped = sa.Table(
    audit_log_table.name,
    sa.MetaData(),
    *(sa.Column(c.name, sa.types.NullType()) for c in audit_log_table.columns),
    schema=audit_log_table.schema,
)
_PREPARED = frozenset({"sqlite", "mysql", "mariadb"})


def _prepared(dialect_name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in the form the SQLite and MySQL drivers take: JSON text, naive UTC times."""
    sqlite = dialect_name == "sqlite"
    out = []
    for row in rows:
        row = dict(row)
        for name in _JSON_COLUMNS:
            value = row[name]
            if value is not None:
                row[name] = _dumps(value)
        moment = row["timestamp"].astimezone(dt.timezone.utc).replace(tzinfo=None)
        # SQLite: the text form of SQLAlchemy's DATETIME, which reads and sorts it back
        row["timestamp"] = moment.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else moment
        out.append(row)
    return out


def insert_rows(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert complete ``audit_log`` rows (every column given) on ``connection``."""
    dialect = connection.dialect.name
    if len(rows) >= COPY_THRESHOLD and _can_copy(connection):
        _copy(connection, rows)
    elif dialect in _PREPARED:
        connection.execute(_untyped.insert(), _prepared(dialect, rows))
    else:
        connection.execute(audit_log_table.insert(), rows)
