"""The Core hook of the bulk algorithm: statements on an audited session's connection.

The legacy ``bulk_*`` session methods, ``session.execute()`` of a statement on a ``Table`` and
``session.connection().execute(...)`` emit no session event, but all of them run on a connection
an enabled session began. :func:`mark_connection` (called by the session's ``after_begin``) marks
that connection; the engine's ``before_execute`` describes each INSERT, UPDATE or DELETE on the
table of a registered model for :mod:`.bulk` and reads its rows, and ``after_execute`` writes its
entries. The mark counts only for the transaction it was made in (``commit`` and ``rollback``
remove it), so a pooled connection used later outside the session is not mistaken for the
session's.

Tables shared by joined-inheritance mappers are left out (a row there is only part of an object):
:func:`auditlog.warn_unaudited_writes` points such writes out.
"""

from __future__ import annotations

import weakref
from typing import Any, Literal

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Delete, Insert, Update

from ..exceptions import CaptureError
from ..registry import Family, is_secondary, table_family
from .bulk import (
    BulkStatement,
    given_keys,
    insert_statement,
    key_values_of,
    keys_not_returned,
    read_before,
    write_after,
)
from .engines import EngineListeners
from .refusal import refused_on_error
from .rows import FamilyRows
from .span import INTERNAL, audited_write, in_audited_write

__all__ = ["ENGINE_EVENTS", "captures", "mark_connection"]

_SESSION = "auditlog.session"
_PENDING = "auditlog.core_pending"


def captures(connection: Connection, table: Any) -> bool:
    """Whether a write to ``table`` on ``connection`` is captured here."""
    return _session_of(connection) is not None and table_family(table) is not None


def mark_connection(session: Session, connection: Connection) -> None:
    """Mark a connection an enabled session uses, for the connection's current transaction."""
    ENGINE_EVENTS.attach(connection.engine)
    root = connection.get_transaction()
    if root is not None:
        connection.info[_SESSION] = (weakref.ref(root), weakref.ref(session))


def _session_of(connection: Connection) -> Session | None:
    """The enabled session whose transaction ``connection`` is in now, if any.

    ``connection.info`` belongs to the pooled DBAPI connection and outlives the transaction:
    the mark counts only while the transaction it was made in is the current one.
    """
    held = connection.info.get(_SESSION)
    if held is None:
        return None
    transaction = connection.get_transaction()
    if transaction is None or held[0]() is not transaction:
        connection.info.pop(_SESSION, None)
        return None
    session: Session | None = held[1]()
    return session


def _describe(
    elem: Any, sets: list[dict[str, Any]], multi: bool, params: Any, dialect: Dialect
) -> tuple[BulkStatement | None, Any]:
    """The :class:`BulkStatement` of ``elem`` (and ``elem`` itself, with the primary key to be
    returned where an INSERT's parameters do not give it), or None when it is not captured."""
    rows = table_family(getattr(elem, "table", None))
    if rows is None:
        return None, elem
    plan = rows.keys
    action: Literal["insert", "update", "delete"] = (
        "insert" if isinstance(elem, Insert) else "update" if isinstance(elem, Update) else "delete"
    )
    label = f"{action}({plan.table_name})"
    if action == "insert":
        return _describe_insert(rows, elem, sets, label, dialect)
    # an UPDATE that sets keys: its rows are found by the criteria, their new keys computed
    key_values = (key_values_of(rows, elem, sets, label) if action == "update" else None) or ()
    if not key_values:
        keys = [plan.identity({plan.attribute_key(k): v for k, v in p.items()}) for p in sets]
        known = [k for k in keys if k is not None]
        if multi and len(known) == len(keys):
            return BulkStatement(rows, action, label, keys=known), elem
    return (
        BulkStatement(
            rows,
            action,
            label,
            where=elem.whereclause,
            params=params,
            param_sets=sets if multi else (),
            key_values=key_values,
        ),
        elem,
    )


def _describe_insert(
    rows: Family, elem: Any, sets: list[dict[str, Any]], label: str, dialect: Dialect
) -> tuple[BulkStatement, Any]:
    """An INSERT's :class:`BulkStatement`, and the statement to run: as given when its values
    give every primary key; else made to return the keys it inserts (``return_defaults()`` for
    one row or an executemany, so that ``inserted_primary_key`` still works; ``RETURNING`` for
    ``.values([...])`` of several rows and ``INSERT ... FROM SELECT``, which return_defaults
    does not cover). Refused where the database cannot return the keys of its rows."""
    plan = rows.keys
    stmt = insert_statement(rows, elem, sets, label=label)
    from_select = getattr(elem, "select", None) is not None
    keys = None if from_select else given_keys(stmt)
    if keys is not None:
        stmt.keys = keys
        return stmt, elem
    if getattr(elem, "_returning", ()):
        raise CaptureError(
            f"{label} has a RETURNING of its own and leaves the primary key "
            f"({', '.join(plan.pk_keys)}) to the database, so the rows it inserts cannot be "
            "told apart: give the keys in its values, or use the ORM form "
            f"session.execute(insert({plan.mapper.class_.__name__}).returning(...))"
        )
    pk = [plan.mapper.columns[key] for key in plan.pk_keys]
    if from_select or bool(getattr(elem, "_multi_values", None)):
        if not dialect.insert_returning:
            raise keys_not_returned(label, plan, dialect)
        stmt.returned = True
        return stmt, elem.returning(*pk)
    # without RETURNING, an executemany's keys are those SQLAlchemy knows before it runs (a
    # Python default): one the database makes comes back as None, refused once it has run
    return stmt, elem.return_defaults(*pk)


def _flush_writes_secondary(elem: Any, execution_options: Any) -> bool:
    """Whether a write inside an audited flush is a many-to-many collection's row: the flush
    writes those with plain Core statements, its objects' rows with the mapper's compiled
    cache. A registered class mapped to that table gets its entries here."""
    return execution_options.get("compiled_cache") is None and is_secondary(
        getattr(elem, "table", None)
    )


def before_execute(
    conn: Connection, elem: Any, multiparams: Any, params: Any, execution_options: Any
) -> tuple[Any, Any, Any]:
    """Read the rows a captured statement may change, before it runs."""
    if not isinstance(elem, (Insert, Update, Delete)) or execution_options.get(INTERNAL):
        return elem, multiparams, params
    if in_audited_write() and not _flush_writes_secondary(elem, execution_options):
        return elem, multiparams, params
    session = _session_of(conn)
    if session is None:
        return elem, multiparams, params
    sets = list(multiparams) if multiparams else [params or {}]
    stmt, elem = _describe(elem, sets, bool(multiparams), params, conn.dialect)
    if stmt is None:
        return elem, multiparams, params
    with audited_write():
        before = read_before(session, stmt)
    conn.info.setdefault(_PENDING, []).append((elem, stmt, before))
    return elem, multiparams, params


def after_execute(
    conn: Connection, elem: Any, multiparams: Any, params: Any, execution_options: Any, result: Any
) -> None:
    """Write the entries of a captured statement that has run."""
    stack: list[tuple[Any, BulkStatement, FamilyRows]] | None = conn.info.get(_PENDING)
    if not stack or stack[-1][0] is not elem:
        return
    _, stmt, before = stack.pop()
    session = _session_of(conn)
    if session is None:
        return
    with audited_write(), refused_on_error(conn):
        inserted: list[tuple[Any, ...]] = []
        if stmt.action == "insert" and stmt.keys is None:
            rows = result if stmt.returned else result.inserted_primary_key_rows or ()
            inserted = [tuple(row) for row in rows]
            if any(None in key for key in inserted):
                raise keys_not_returned(stmt.label, stmt.family.keys, conn.dialect)
        write_after(session, stmt, before, rowcount=result.rowcount, inserted=inserted)


def _unmark(connection: Connection) -> None:
    connection.info.pop(_SESSION, None)
    connection.info.pop(_PENDING, None)


#: The engine events of this hook, attached to an engine when an enabled session first uses it.
ENGINE_EVENTS = EngineListeners(
    ("before_execute", before_execute, {"retval": True}),
    ("after_execute", after_execute, {}),
    ("commit", _unmark, {}),
    ("rollback", _unmark, {}),
)
