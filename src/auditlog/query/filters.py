"""One small function per filter: a ``Select`` of ``audit_log`` in, a narrower one out.

The session stays out of them; :func:`apply_filters` applies every given one (AND).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..exceptions import InvalidQueryError
from ..models import audit_log_table as _t
from ..models import content_type_table
from ..registry import mapper_named
from .cursor import Cursor
from .params import HistoryFilters

__all__ = [
    "FILTERS",
    "Stmt",
    "apply_filters",
    "beyond",
    "by_action_type",
    "by_content_type",
    "by_ip_address",
    "by_object_id",
    "by_tenant",
    "by_transaction",
    "by_user",
    "content_type_named",
    "in_window",
    "resolve_content_type",
]

Stmt = sa.Select[Any]
Filter = Callable[[Stmt, HistoryFilters], Stmt]


def by_tenant(stmt: Stmt, q: HistoryFilters) -> Stmt:
    return stmt if q.tenant_id is None else stmt.where(_t.c.tenant_id == q.tenant_id)


def by_user(stmt: Stmt, q: HistoryFilters) -> Stmt:
    return stmt if q.user_id is None else stmt.where(_t.c.user_id == q.user_id)


def by_ip_address(stmt: Stmt, q: HistoryFilters) -> Stmt:
    return stmt if q.ip_address is None else stmt.where(_t.c.ip_address == q.ip_address)


def by_action_type(stmt: Stmt, q: HistoryFilters) -> Stmt:
    if not q.action_type:
        return stmt
    if len(q.action_type) == 1:
        return stmt.where(_t.c.action_type == q.action_type[0])
    return stmt.where(_t.c.action_type.in_(q.action_type))


def by_object_id(stmt: Stmt, q: HistoryFilters) -> Stmt:
    return stmt if q.object_id is None else stmt.where(_t.c.object_id == q.object_id)


def by_content_type(stmt: Stmt, q: HistoryFilters) -> Stmt:
    """By id; a name is turned into its id first (:func:`resolve_content_type`)."""
    if q.content_type is None:
        return stmt
    if isinstance(q.content_type, int):
        return stmt.where(_t.c.content_type == q.content_type)
    named = content_type_table.c.name == q.content_type
    return stmt.where(
        _t.c.content_type == sa.select(content_type_table.c.id).where(named).scalar_subquery()
    )


_F = TypeVar("_F", bound=HistoryFilters)


def resolve_content_type(session: Session, q: _F) -> _F:
    """``q`` with a model's name in ``content_type`` replaced by its id
    (:func:`content_type_named`)."""
    name = q.content_type
    if not isinstance(name, str):
        return q
    return q.model_copy(update={"content_type": content_type_named(session, name)})


def content_type_named(session: Session, name: str) -> int:
    """The content type id of a model's name: the name entries give (``app.models.Loan``), or
    the class name alone (``Loan``) when one model has it. A model mapped in this process that
    has no entry yet is -1 (it matches nothing); any other unknown name, or a class name several
    models share, is an :class:`~auditlog.InvalidQueryError` naming ``content_type`` that lists
    the known ones."""
    rows = sa.select(content_type_table.c.id, content_type_table.c.name)
    found = session.execute(rows.where(content_type_table.c.name == name)).first()
    if found is None and "." not in name:
        alike = [  # LIKE ignores case on SQLite (and in some collations): names do not
            row
            for row in session.execute(
                rows.where(content_type_table.c.name.endswith(f".{name}", autoescape=True))
            )
            if row.name.endswith(f".{name}")
        ]
        if len(alike) > 1:
            full = ", ".join(sorted(row.name for row in alike))
            raise InvalidQueryError(
                "content_type", f"several models are named {name!r}: {full}; give the full name"
            )
        found = alike[0] if alike else None
    if found is not None:
        return int(found.id)
    if mapper_named(name) is not None:
        return -1  # a model, never audited yet: no entries
    known = session.scalars(
        sa.select(content_type_table.c.name).order_by(content_type_table.c.name).limit(50)
    ).all()
    raise InvalidQueryError(
        "content_type", f"no model is named {name!r}; known: {', '.join(known) or 'none yet'}"
    )


def by_transaction(stmt: Stmt, q: HistoryFilters) -> Stmt:
    return stmt if q.transaction_id is None else stmt.where(_t.c.transaction_id == q.transaction_id)


def in_window(stmt: Stmt, q: HistoryFilters) -> Stmt:
    """``since`` inclusive, ``until`` exclusive; ``until <= since`` is an empty window, not an error."""
    if q.since is not None:
        stmt = stmt.where(_t.c.timestamp >= q.since)
    if q.until is not None:
        stmt = stmt.where(_t.c.timestamp < q.until)
    return stmt


FILTERS: Sequence[Filter] = (
    by_tenant, by_user, by_ip_address, by_action_type, by_object_id, by_content_type,
    by_transaction, in_window,
)  # fmt: skip


def apply_filters(stmt: Stmt, q: HistoryFilters) -> Stmt:
    """``stmt`` with the WHERE clause of every given filter."""
    return reduce(lambda s, f: f(s, q), FILTERS, stmt)


def beyond(stmt: Stmt, cursor: Cursor, dialect: str) -> Stmt:
    """Only the entries after ``cursor`` in its direction, as a range the indexes can seek to.

    PostgreSQL and SQLite compare row values, ``(timestamp, id) < (:ts, :id)``, and use it as an
    index bound. MariaDB/MySQL do not turn a row comparison into a range, so there it is spelled
    ``timestamp <= :ts AND (timestamp < :ts OR id < :id)``: the first term bounds the range scan.
    """
    ts, ident = (
        sa.literal(cursor.timestamp, _t.c.timestamp.type),
        sa.literal(cursor.id, _t.c.id.type),
    )
    older = cursor.direction == "next"
    if dialect in {"postgresql", "sqlite"}:
        row, at = sa.tuple_(_t.c.timestamp, _t.c.id), sa.tuple_(ts, ident)
        return stmt.where(row < at if older else row > at)
    if older:
        return stmt.where(_t.c.timestamp <= ts, sa.or_(_t.c.timestamp < ts, _t.c.id < ident))
    return stmt.where(_t.c.timestamp >= ts, sa.or_(_t.c.timestamp > ts, _t.c.id > ident))
