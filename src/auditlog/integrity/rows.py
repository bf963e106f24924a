"""Entries read as digest input (:data:`~auditlog.integrity.digest.Cells`), for sealing and
verifying.

On PostgreSQL through psycopg, the rows are read by the driver itself, each value in the form
closest to its canonical bytes: the ids as their 16 bytes, the time as UTC ISO 8601 text made
by the server, text as its UTF-8 bytes, the JSON documents as text (decoded here, then
written in canonical form). That skips SQLAlchemy's typed rows and psycopg's JSON and UUID
objects, about half of the time a seal took. Elsewhere, SQLAlchemy's rows are turned into
cells.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..capture.writer import can_copy
from ..models import audit_log_table as _log
from .digest import FIELDS, Cells, canonical_json, entry_cells, row_columns

__all__ = ["cell_columns", "driver_reads", "postgresql_columns", "read_cells"]

_PAGE = 5_000
_JSON = frozenset({"before_state", "after_state", "changed_fields", "extra"})
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # C scanner


def _load(text: str) -> Any:
    """A JSON document as ``json.loads`` reads it (jsonb's text never starts with a space: the
    scanner alone; any other text through ``json.loads``)."""
    try:
        return _scan(text, 0)[0]
    except StopIteration:
        return json.loads(text)


def driver_reads(connection: Connection) -> bool:
    """Whether entries are read by the driver (PostgreSQL with psycopg 3, sync)."""
    return can_copy(connection)


def cell_columns(connection: Connection, prefix: str = "e_") -> list[Any]:
    """The columns of ``audit_log`` a digest reads, labelled ``prefix + name``, in FIELDS order,
    in the form :func:`read_cells` takes them."""
    if not driver_reads(connection):
        return row_columns(_log, prefix)
    return postgresql_columns(prefix)


def postgresql_columns(prefix: str = "") -> list[Any]:
    """Every column of ``audit_log`` as close to its text as PostgreSQL gives it, labelled
    ``prefix + name``, in FIELDS order: the ids as their 16 bytes, the time as UTC ISO 8601
    text, the JSON documents as text."""
    columns: list[Any] = []
    for name in FIELDS:
        column: Any = _log.c[name]
        if name in ("id", "transaction_id"):
            column = sa.func.uuid_send(column)
        elif name == "timestamp":
            utc = sa.func.timezone("UTC", column)
            column = sa.func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
        elif name in _JSON:
            column = sa.cast(column, sa.Text)
        columns.append(column.label(prefix + name))
    return columns


def read_cells(
    connection: Connection, query: sa.Select[Any], *, stream: bool = False
) -> Iterator[tuple[Cells, tuple[Any, ...]]]:
    """Run ``query``, whose first columns are :func:`cell_columns`, and yield each row as the
    entry's cells (None when its entry columns are all null: an outer join found no entry) and
    the row's other values (text among them as UTF-8 bytes where the driver reads them, as str
    elsewhere). ``stream``: read a page at a time (a server-side cursor on
    PostgreSQL)."""
    width = len(FIELDS)
    if not driver_reads(connection):
        result = connection.execution_options(yield_per=5_000) if stream else connection
        for row in result.execute(query):
            values = tuple(row)
            entry = values[:width]
            yield (entry_cells(dict(zip(FIELDS, entry, strict=True))) if entry[0] is not None else None), values[width:]  # type: ignore[misc]  # fmt: skip
        return
    yield from _driver_cells(connection, query, stream)


def _driver_cells(
    connection: Connection, query: sa.Select[Any], stream: bool
) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    from ..lifecycle.archive.pages import prefetched, processed

    compiled = query.compile(connection)
    params = processed(compiled, compiled.construct_params())
    dbapi: Any = connection.connection.dbapi_connection
    width = len(FIELDS)
    if not stream:
        with _raw_text(dbapi.cursor(binary=True)) as cursor:
            cursor.execute(str(compiled), params)
            rows = cursor.fetchall()
        for row in rows:
            yield (_cells(row) if row[0] is not None else None), row[width:]
        return

    def pages() -> Iterator[list[Any]]:
        with _raw_text(dbapi.cursor("auditlog_cells", binary=True)) as cursor:
            cursor.execute(str(compiled), params)
            while rows := cursor.fetchmany(_PAGE):
                yield rows

    # the next page is fetched by a thread of its own while this one hashes the current one:
    # the server's work on it overlaps ours
    for rows in prefetched(pages()):
        for row in rows:
            yield (_cells(row) if row[0] is not None else None), row[width:]


def _raw_text(cursor: Any) -> Any:
    """``cursor`` reading text as its UTF-8 bytes, the form a digest takes (no str made, then
    encoded again)."""
    from psycopg.types.string import ByteaBinaryLoader

    for name in ("text", "varchar", "bpchar"):
        cursor.adapters.register_loader(name, ByteaBinaryLoader)
    return cursor


def _cells(row: Any) -> Cells:
    """A driver row's first columns (:func:`cell_columns` on PostgreSQL) as cells."""
    (
        entry_id, tenant_id, user_id, action_type, timestamp, ip_address, user_agent, object_id,
        content_type, before_state, after_state, changed_fields, transaction_id, extra, renamed_to,
    ) = row[:15]  # fmt: skip
    return (
        entry_id.hex().encode(),
        tenant_id,
        user_id,
        action_type,
        timestamp,
        ip_address,
        user_agent,
        object_id,
        None if content_type is None else str(content_type).encode(),
        _document(before_state),
        _document(after_state),
        _document(changed_fields),
        None if transaction_id is None else transaction_id.hex().encode(),
        _document(extra),
        renamed_to,
    )


def _document(raw: bytes | None) -> bytes | None:
    """A JSON document's text (UTF-8) in canonical form."""
    if raw is None:
        return None
    value = _load(raw.decode())
    return None if value is None else canonical_json(value).encode("utf-8", "surrogatepass")
