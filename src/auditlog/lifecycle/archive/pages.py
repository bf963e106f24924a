"""Reading the selected entries a page at a time, along the primary key, as rows of the
archive's entry records; on PostgreSQL through the driver's cursor, one page ahead."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from ...integrity.digest import FIELDS
from ...integrity.rows import postgresql_columns
from ...integrity.tables import seal_entry_table as _member
from ...models import audit_log_table as _log
from ...ulids import ulid_texts
from .records import ENTRY, iso_time, ulid_text

__all__ = ["entry_pages", "prefetched", "processed"]

#: Where an entry row holds its id, time and transaction id.
_ID, _TIME, _TXN = (ENTRY.index(name) for name in ("id", "timestamp", "transaction_id"))
_NO_ID = "0" * 32
_JSON = ("before_state", "after_state", "changed_fields", "extra")


def _entry_columns(sealed: bool, postgresql: bool) -> list[Any]:
    """Every column as close to its text as the database gives it: ids as bytes (PostgreSQL)
    or hex, JSON columns as text; on PostgreSQL the time as ISO 8601 UTC text too."""
    columns: list[Any] = []
    if postgresql:
        columns = postgresql_columns()
    else:
        for name in FIELDS:
            column: Any = _log.c[name]
            if name in ("id", "transaction_id"):
                column = sa.type_coerce(column, sa.String)
            elif name in _JSON:
                column = sa.type_coerce(column, sa.Text)
            columns.append(column.label(name))
    names = ("seal_seq", "entry_key", "digest", "erased")
    if sealed:
        columns += [_member.c[name] for name in names]
    else:
        columns += [sa.null().label(name) for name in names]
    return columns


def _entry_rows(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """SQLite and MariaDB rows as entry rows: ULIDs as text, times in ISO 8601 UTC."""
    ids = ulid_texts([bytes.fromhex(row[_ID]) for row in rows])
    txns = ulid_texts([bytes.fromhex(row[_TXN] or _NO_ID) for row in rows])
    out = []
    for row, entry_id, txn in zip(rows, ids, txns, strict=True):
        cells = list(row)
        cells[_ID] = entry_id
        if cells[_TXN] is not None:
            cells[_TXN] = txn
        cells[_TIME] = iso_time(cells[_TIME])
        out.append(tuple(cells))
    return out


def prefetched(pages: Iterator[list[Any]]) -> Iterator[list[Any]]:
    """``pages`` read by a thread of their own, one page ahead: the database runs the next query
    while this thread writes the current page (the reader waits on the socket, not on Python).
    Nothing else uses the connection meanwhile."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        ready.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the writing thread
            failed.append(exc)
        finally:
            stop.wait(0) or _put(ready, None, stop)

    reader = threading.Thread(target=read, name="auditlog-export", daemon=True)
    reader.start()
    try:
        while (page := ready.get()) is not None:
            yield page
    finally:
        stop.set()
        reader.join()
    if failed:
        raise failed[0]


def _put(ready: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def entry_pages(
    connection: Connection,
    sealed: bool,
    source: Any,
    conditions: list[Any],
    page_size: int,
) -> Iterator[list[tuple[Any, ...]]]:
    """The selected entries in id order, as pages of entry rows: pages along the primary key,
    each query starting where the last one ended; on PostgreSQL, read by the driver itself
    (plain tuples), one page ahead."""
    postgresql = connection.dialect.name == "postgresql"
    query = sa.select(*_entry_columns(sealed, postgresql)).select_from(source).where(*conditions)
    query = query.order_by(_log.c.id).limit(page_size)
    if postgresql:
        pages = prefetched(_driver_pages(connection, query, page_size))
    else:
        pages = _core_pages(connection, query, page_size)
    for rows in pages:  # PostgreSQL's ids stay bytes: the writer makes their text
        yield rows if postgresql else _entry_rows(rows)


def _core_pages(connection: Connection, query: sa.Select[Any], page_size: int) -> Iterator[list[Any]]:  # fmt: skip
    last: Any = None
    while True:
        rows = list(
            connection.execute(query if last is None else query.where(_log.c.id > last)).all()
        )
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        last = ulid_text(bytes.fromhex(rows[-1][_ID]))


def _driver_pages(connection: Connection, query: sa.Select[Any], page_size: int) -> Iterator[list[Any]]:  # fmt: skip
    """PostgreSQL: the page queries compiled once (the first page's, and the next pages' with
    ``id > %(after)s``), run on the driver's cursor."""
    first = query.compile(connection)
    after = sa.bindparam("after", type_=postgresql.UUID(as_uuid=False))
    following = query.where(_log.c.id > after).compile(connection)
    params = processed(first, first.construct_params())
    cursor = connection.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]
    cursor.execute(str(first), params)
    while True:
        rows = list(cursor.fetchall())
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        cursor.execute(str(following), {**params, "after": rows[-1][_ID].hex()})


def processed(compiled: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """Bound values as the driver takes them (the column types' bind processing applied)."""
    processors = compiled._bind_processors
    return {k: processors[k](v) if k in processors else v for k, v in params.items()}
