"""Small readers of the audit log for assertions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog import AuditLog


def entries(engine: Engine, **filters: Any) -> list[AuditLog]:
    """Every audit entry (optionally filtered by column values), oldest first."""
    with sa.orm.Session(engine) as session:
        query = sa.select(AuditLog).filter_by(**filters).order_by(AuditLog.timestamp, AuditLog.id)
        return list(session.scalars(query))


def actions(engine: Engine) -> list[tuple[str, str]]:
    """(action_type, object_id) of every entry, oldest first."""
    return [(e.action_type, e.object_id) for e in entries(engine)]
