"""An opt-in warning for writes to audited tables that the audit log does not see.

auditlog captures what goes through an enabled ``Session``: flushes and ORM-enabled statements.
Core statements on a ``Connection``, ``session.execute()`` of a statement on a ``Table``, the
legacy ``bulk_*`` session methods and sessions that were never enabled write around it.
:func:`warn_unaudited_writes` makes each such write to an audited table emit
:class:`UnauditedWriteWarning`, so that tests (``-W error::auditlog.UnauditedWriteWarning``) or logs
catch them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Delete, Insert, Update

from ._asyncio import AsyncEngine
from .registry import audited_tables

__all__ = ["UnauditedWriteWarning", "audited_write", "warn_unaudited_writes"]

_depth: ContextVar[int] = ContextVar("auditlog_audited_write", default=0)


class UnauditedWriteWarning(UserWarning):
    """A statement wrote to an audited table without going through the audit log."""


@contextmanager
def audited_write() -> Iterator[None]:
    """Mark the writes made inside the block as audited ones."""
    token = _depth.set(_depth.get() + 1)
    try:
        yield
    finally:
        _depth.reset(token)


def begin_audited_write() -> Token[int]:
    """Like :func:`audited_write`, for a span that starts and ends in two listeners."""
    return _depth.set(_depth.get() + 1)


def end_audited_write(token: Token[int] | None = None) -> None:
    """End a span begun with :func:`begin_audited_write` (all of them when no token is given)."""
    if token is None:
        _depth.set(0)
        return
    try:
        _depth.reset(token)
    except ValueError:  # reset from another context: fall back to clearing
        _depth.set(0)


def in_audited_write() -> bool:
    """True inside an audited flush or statement."""
    return _depth.get() > 0


def before_execute(
    conn: Connection,
    clauseelement: Any,
    multiparams: Any,
    params: Any,
    execution_options: Any,
) -> None:
    """Warn when a write to an audited table runs outside an audited flush or statement."""
    if not isinstance(clauseelement, (Insert, Update, Delete)) or _depth.get():
        return
    table = getattr(clauseelement, "table", None)
    if table is None or table not in audited_tables():
        return
    from .core import captures  # imported late: core builds on this module

    if not captures(conn, table):
        warnings.warn(
            f"{type(clauseelement).__name__.upper()} on audited table {table.name!r} bypasses "
            "the audit log: run it through an enabled Session (session.execute(update(Model)...))",
            UnauditedWriteWarning,
            stacklevel=6,
        )


def warn_unaudited_writes(engine: Engine | AsyncEngine, *, enabled: bool = True) -> None:
    """Warn about every write to an audited table on ``engine`` that the log does not record.

    Idempotent; ``enabled=False`` removes the warning again.
    """
    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    attached = event.contains(target, "before_execute", before_execute)
    if enabled and not attached:
        event.listen(target, "before_execute", before_execute)
    elif not enabled and attached:
        event.remove(target, "before_execute", before_execute)
