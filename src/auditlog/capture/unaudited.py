"""An opt-in warning for writes to audited tables that the audit log does not see.

auditlog captures what goes through an enabled ``Session``: flushes, ORM-enabled statements, and
Core statements on the connection of an enabled session. Core statements on a connection no
enabled session began, writes to a table that holds only part of an object (joined inheritance)
and sessions that were never enabled write around it. :func:`warn_unaudited_writes` makes each
such write to an audited table emit :class:`UnauditedWriteWarning`, so that tests
(``-W error::auditlog.UnauditedWriteWarning``) or logs catch them.
"""

from __future__ import annotations

import warnings
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Delete, Insert, Update

from .._asyncio import AsyncEngine
from ..registry import audited_tables
from .core_statements import captures
from .span import in_audited_write

__all__ = ["UnauditedWriteWarning", "warn_unaudited_writes"]


class UnauditedWriteWarning(UserWarning):
    """A statement wrote to an audited table without going through the audit log."""


def before_execute(
    conn: Connection,
    clauseelement: Any,
    multiparams: Any,
    params: Any,
    execution_options: Any,
) -> None:
    """Warn when a write to an audited table runs outside an audited flush or statement."""
    if not isinstance(clauseelement, (Insert, Update, Delete)) or in_audited_write():
        return
    table = getattr(clauseelement, "table", None)
    if table is None or table not in audited_tables():
        return
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
