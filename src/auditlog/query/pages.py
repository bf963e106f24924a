"""Running a validated query: one page of entries, by number or after a cursor.

Results are newest first: ``timestamp`` then ``id`` descending, which the ``ix_audit_log_*``
indexes serve (see docs/query.md for the plans).

- page numbers (:func:`numbered_page`): a ``COUNT`` plus ``LIMIT``/``OFFSET``, so page *n* costs
  *n* pages of index reads, and entries written meanwhile shift the pages;
- keyset (:func:`cursor_page`): the cursor holds the ``(timestamp, id)`` of the row where the
  page stopped and the next page starts right after it in the index, so each page costs the
  same however deep it is, and new entries never shift it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..documents import Unreadable, readable
from ..models import AuditLog, content_type_table
from ..models import audit_log_table as _t
from .counts import Count, count_entries
from .cursor import Cursor
from .filters import Stmt, apply_filters, beyond, resolve_content_type
from .params import CursorQuery, HistoryQuery
from .schemas import ENTRY_COLUMNS, AuditLogEntry, CursorPage, HistoryPage

__all__ = ["cursor_page", "numbered_page"]

_log = logging.getLogger("auditlog.query")
#: The JSON columns of an entry are parsed row by row, so that one row holding text that is not
#: JSON (written by something else, where the database keeps JSON as text) is left out of its
#: page instead of failing the page.
_JSON = frozenset({"before_state", "after_state", "changed_fields", "extra"}) & set(ENTRY_COLUMNS)
_COLUMNS = [
    *(readable(_t.c[name]) if name in _JSON else _t.c[name] for name in ENTRY_COLUMNS),
    content_type_table.c.name.label("model"),
]
_WITH_MODEL = _t.outerjoin(content_type_table, _t.c.content_type == content_type_table.c.id)
_NEWEST_FIRST = (_t.c.timestamp.desc(), _t.c.id.desc())
_OLDEST_FIRST = (_t.c.timestamp.asc(), _t.c.id.asc())


def _dialect(session: Session) -> str:
    return session.get_bind(mapper=AuditLog).dialect.name


def _fetch(
    session: Session,
    keys: Stmt,
    order: tuple[Any, ...],
    limit: int,
    offset: int = 0,
    *,
    deep: bool,
) -> list[AuditLogEntry]:
    """The entries of one page: ``keys`` (a SELECT of ``audit_log.id`` with the page's WHERE
    clause) in ``order``, ``limit`` rows from ``offset``.

    On MariaDB and MySQL a ``deep`` page (past a cursor, or at an offset) finds its ids first,
    in a derived table, and joins the entries to them: the ids come from the filter's index
    alone, which the optimizer seeks as a range, where for whole rows it reads the tenant's
    entries from the newest one (a cursor page 1,000 deep in 40,000 entries: 4 ms instead of
    66). The first page reads its rows directly, which is a millisecond faster there.
    """
    keys = keys.order_by(*order).limit(limit).offset(offset or None)
    dialect = _dialect(session)
    if deep and dialect in {"mysql", "mariadb"}:
        found = keys.subquery("page_keys")
        stmt = sa.select(*_COLUMNS).select_from(_WITH_MODEL.join(found, _t.c.id == found.c.id))
        stmt = stmt.order_by(*order)
    else:
        stmt = keys.with_only_columns(*_COLUMNS).select_from(_WITH_MODEL)
    rows: Iterable[Mapping[Any, Any]] = session.execute(stmt).mappings()
    entries = (AuditLogEntry.from_row(row) for row in rows if _readable(row))
    return [entry for entry in entries if entry is not None]


def _readable(row: Mapping[Any, Any]) -> bool:
    """Whether every JSON column of ``row`` parsed; if not, a warning names the row."""
    for name in _JSON:
        value = row[name]
        if isinstance(value, Unreadable):
            _log.warning(
                "audit_log row %r cannot be read and is left out: %s is not JSON (%s)",
                row.get("id"),
                name,
                value.error,
            )
            return False
    return True


def numbered_page(session: Session, q: HistoryQuery) -> HistoryPage:
    """Page ``q.page`` of the entries matching ``q``, with their count (see :mod:`.counts`)."""
    q = resolve_content_type(session, q)
    keys = apply_filters(sa.select(_t.c.id), q)
    count = count_entries(session, keys, q.count_limit)
    offset = (q.page - 1) * q.page_size
    if count.exact:
        results: list[AuditLogEntry] = []
        if offset < count.value:  # a page beyond the last is empty: no need to ask
            results = _fetch(session, keys, _NEWEST_FIRST, q.page_size, offset, deep=offset > 0)
        more = offset + len(results) < count.value
    else:  # one row past the page says whether another one follows
        results = _fetch(session, keys, _NEWEST_FIRST, q.page_size + 1, offset, deep=offset > 0)
        more = len(results) > q.page_size
        del results[q.page_size :]
        if results and not more:  # the last page: the count is known
            count = Count(offset + len(results), True)
        elif not results:  # past the last page: at most the entries before it
            count = Count(min(count.value, offset), False)
    last = results[-1] if results else None
    after = Cursor(last.timestamp, last.id, "next").encode() if last is not None and more else None
    return HistoryPage.numbered(
        count.value, q.page, q.page_size, results, after, exact=count.exact, more=more
    )


def cursor_page(session: Session, q: CursorQuery) -> CursorPage:
    """The page after (or before) ``q.cursor`` of the entries matching ``q``."""
    q = resolve_content_type(session, q)
    keys = apply_filters(sa.select(_t.c.id), q)
    forward = q.cursor is None or q.cursor.direction == "next"
    if q.cursor is not None:
        keys = beyond(keys, q.cursor, _dialect(session))
    order = _NEWEST_FIRST if forward else _OLDEST_FIRST
    results = _fetch(session, keys, order, q.page_size + 1, deep=q.cursor is not None)
    more = len(results) > q.page_size  # one row past the page says whether another page exists
    del results[q.page_size :]
    if not forward:
        results.reverse()
    # The page reached through a cursor has the cursor's entry on its other side.
    has_next = more if forward else bool(results)
    has_previous = (q.cursor is not None and bool(results)) if forward else more
    first, last = (results[0], results[-1]) if results else (None, None)
    return CursorPage(
        has_next=has_next,
        has_previous=has_previous,
        next_cursor=Cursor(last.timestamp, last.id, "next").encode() if has_next and last else None,
        previous_cursor=(
            Cursor(first.timestamp, first.id, "previous").encode()
            if has_previous and first
            else None
        ),
        results=results,
    )
