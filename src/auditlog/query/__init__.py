"""``query_history``: the ``GET /history/`` endpoint as a library call, plus a keyset mode.

The flow: :mod:`.params` validates the arguments once (pydantic), :mod:`.filters` turns them
into a ``Select``, :mod:`.pages` runs it for one page, :mod:`.schemas` is the page's shape and
:mod:`.cursor` the token of a keyset position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from .._asyncio import AsyncSession
from .cursor import Cursor
from .pages import cursor_page, numbered_page
from .params import (
    MAX_PAGE_SIZE,
    CursorArguments,
    CursorQuery,
    FilterArguments,
    HistoryFilters,
    HistoryQuery,
    PageArguments,
)
from .schemas import AuditLogEntry, CursorPage, HistoryPage

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "MAX_PAGE_SIZE",
    "AuditLogEntry",
    "Cursor",
    "CursorArguments",
    "CursorPage",
    "CursorQuery",
    "FilterArguments",
    "HistoryFilters",
    "HistoryPage",
    "HistoryQuery",
    "PageArguments",
    "query_history",
    "query_history_async",
    "query_history_cursor",
    "query_history_cursor_async",
]


def query_history(session: Session, **arguments: Unpack[PageArguments]) -> HistoryPage:
    """One numbered page of the audit entries matching every given filter, newest first.

    Filters (all optional, combined with AND): ``tenant_id``, ``user_id``, ``ip_address``,
    ``action_type`` (one value, a list, or a comma-separated string), ``object_id`` (the stored
    text, or a tuple for a composite key), ``content_type`` (an id, a model name or the mapped
    class), ``since`` (inclusive) and ``until`` (exclusive) on the timestamp. Paging: ``page``
    from 1 (a page beyond the last is empty) and ``page_size`` from 1 to 1000 (20).

    Raises :class:`~auditlog.InvalidQueryError` (a ``ValueError``) naming a bad argument.
    """
    return numbered_page(session, HistoryQuery.parse(**arguments))


def query_history_cursor(session: Session, **arguments: Unpack[CursorArguments]) -> CursorPage:
    """One page in keyset mode: the filters and order of :func:`query_history`, positioned by
    ``cursor``, with ``page_size`` entries.

    Without a cursor, the newest entries; then pass the page's ``next_cursor`` (older entries) or
    ``previous_cursor`` (newer ones). Each page costs the same however deep it is, and entries
    written in between never shift it. A malformed cursor raises
    :class:`~auditlog.InvalidQueryError` naming ``cursor``.
    """
    return cursor_page(session, CursorQuery.parse(**arguments))


async def query_history_async(
    session: AsyncSession, **arguments: Unpack[PageArguments]
) -> HistoryPage:
    """:func:`query_history` for an ``AsyncSession`` (same arguments, same page)."""
    return await session.run_sync(numbered_page, HistoryQuery.parse(**arguments))


async def query_history_cursor_async(
    session: AsyncSession, **arguments: Unpack[CursorArguments]
) -> CursorPage:
    """:func:`query_history_cursor` for an ``AsyncSession`` (same arguments, same page)."""
    return await session.run_sync(cursor_page, CursorQuery.parse(**arguments))
