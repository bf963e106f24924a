"""Core statements on an audited session's connection: the legacy ``bulk_*`` session methods,
``session.execute()`` of a statement on a ``Table``, ``session.connection().execute(...)``.

None of these emits a session event, but all of them run on a connection an enabled session
began. ``after_begin`` marks that connection; engine-level ``before_execute`` / ``after_execute``
listeners then capture each INSERT, UPDATE or DELETE on the table of a registered model the same
way :mod:`auditlog.statements` does for ORM statements: affected rows read first (locked where the
database can), new values read back by primary key, one entry per row. The mark is removed when
the connection's transaction commits or rolls back, so a pooled connection used later outside the
session is not mistaken for the session's.

Tables shared by joined-inheritance mappers are left out (a row there is only part of an object):
:func:`auditlog.warn_unaudited_writes` points such writes out.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.sql.dml import Delete, Insert, Update

from . import guard
from .entries import Change, write_changes
from .registry import Plan, plan_for, registered_mappers, registry_version
from .states import load_columns, read_rows

__all__ = ["after_begin", "captures", "core_plan"]

_SESSION = "auditlog.session"
_PENDING = "auditlog.core_pending"
_plans: dict[Any, Plan | None] = {}
_plans_version = [-1]


def captures(connection: Connection, table: Any) -> bool:
    """Whether a write to ``table`` on ``connection`` is captured here."""
    return _session_of(connection) is not None and core_plan(table) is not None


def core_plan(table: Any) -> Plan | None:
    """The plan of the one registered mapper whose rows are exactly this table's rows."""
    version = registry_version()
    if _plans_version[0] != version:
        _plans.clear()
        _plans_version[0] = version
    if table in _plans:
        return _plans[table]
    found: Plan | None = None
    owners: list[Mapper[Any]] = []
    for base in registered_mappers():
        for mapper in base.self_and_descendants:
            if table in mapper.tables and mapper not in owners:
                owners.append(mapper)
    if owners:
        root = owners[0].base_mapper
        single = all(m.local_table is table for m in owners) and all(
            m.local_table is table for m in root.self_and_descendants
        )
        if single and not any(m.concrete for m in owners):
            found = plan_for(root if root in owners else owners[0])
    _plans[table] = found
    return found


def after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    """Mark a connection an enabled session uses, for the connection's current transaction."""
    _watch(connection.engine)
    root = connection.get_transaction()
    if root is not None:
        connection.info[_SESSION] = (weakref.ref(root), weakref.ref(session))


_watched: weakref.WeakSet[Engine] = weakref.WeakSet()
_watch_lock = threading.Lock()


def _watch(engine: Engine) -> None:
    if engine in _watched:
        return
    with _watch_lock:
        if engine in _watched:
            return
        event.listen(engine, "before_execute", _before_execute, retval=True)
        event.listen(engine, "after_execute", _after_execute)
        event.listen(engine, "commit", _unmark)
        event.listen(engine, "rollback", _unmark)
        _watched.add(engine)


def _unmark(connection: Connection) -> None:
    connection.info.pop(_SESSION, None)
    connection.info.pop(_PENDING, None)


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


def _pk_from(plan: Plan, params: dict[str, Any]) -> tuple[Any, ...] | None:
    table = plan.mapper.local_table
    named = {}
    for key, value in params.items():
        column = table.c.get(key) if isinstance(key, str) else None
        if column is not None:
            named[plan.mapper.get_property_by_column(column).key] = value
    try:
        return tuple(named[k] for k in plan.pk_keys)
    except KeyError:
        return None


def _before_execute(
    conn: Connection, elem: Any, multiparams: Any, params: Any, execution_options: Any
) -> tuple[Any, Any, Any]:
    if (
        not isinstance(elem, (Insert, Update, Delete))
        or guard.in_audited_write()
        or execution_options.get("auditlog_internal")
    ):
        return elem, multiparams, params
    session = _session_of(conn)
    plan = core_plan(getattr(elem, "table", None)) if session is not None else None
    if session is None or plan is None:
        return elem, multiparams, params
    sets = list(multiparams) if multiparams else [params or {}]
    pending: dict[str, Any] = {"elem": elem, "plan": plan, "keys": None, "before": {}}
    if isinstance(elem, Insert):
        keys = [_pk_from(plan, p) for p in sets]
        if all(k is not None for k in keys) and sets != [{}]:
            pending["keys"] = keys
        else:
            pk_columns = [plan.mapper.columns[k] for k in plan.pk_keys]
            elem = elem.return_defaults(*pk_columns)
        if getattr(elem, "_post_values_clause", None) is not None and pending["keys"]:
            pending["before"] = load_columns(
                session, plan, pending["keys"], plan.keys, for_update=True
            )
    else:
        keys = [_pk_from(plan, p) for p in sets] if multiparams else []
        known = [k for k in keys if k is not None]
        if multiparams and len(known) == len(keys):
            pending["before"] = load_columns(session, plan, known, plan.keys, for_update=True)
        else:
            pending["before"] = read_rows(session, plan, elem.whereclause, params, lock=True)
    pending["elem"] = elem
    conn.info.setdefault(_PENDING, []).append(pending)
    return elem, multiparams, params


def _after_execute(
    conn: Connection, elem: Any, multiparams: Any, params: Any, execution_options: Any, result: Any
) -> None:
    stack = conn.info.get(_PENDING)
    if not stack or stack[-1]["elem"] is not elem:
        return
    pending = stack.pop()
    session = _session_of(conn)
    if session is None:
        return
    plan: Plan = pending["plan"]
    before: dict[tuple[Any, ...], dict[str, Any]] = pending["before"]
    with guard.audited_write():
        if isinstance(elem, Delete):
            changes = [Change(plan, "delete", pk, values, None) for pk, values in before.items()]
        else:
            if isinstance(elem, Insert):
                keys = pending["keys"]
                if keys is None:
                    keys = [tuple(row) for row in result.inserted_primary_key_rows or ()]
            else:
                keys = list(before)
            after = load_columns(session, plan, keys, plan.keys)
            changes = []
            for pk in dict.fromkeys(keys):
                if pk not in after:
                    continue
                if pk in before:
                    changes.append(Change(plan, "update", pk, before[pk], after[pk]))
                else:
                    changes.append(Change(plan, "create", pk, None, after[pk]))
        write_changes(session, changes)
