"""Session listeners that turn flushes of registered models into ``audit_log`` rows.

- ``before_flush`` keeps a shallow copy of each dirty registered object's loaded values (the flush
  may expire some, e.g. server ``onupdate`` columns) and loads, in one query per model, the values
  of updated or deleted objects that SQLAlchemy does not hold (deferred, expired).
- ``after_flush`` runs after the SQL, while attribute history still shows what changed: it builds
  one entry per created, changed or deleted object, loads after-values the flush expired (one query
  per model), and writes every entry with one INSERT on the flush's own connection. An error there
  fails the flush, so no change is committed unaudited.
- ``after_commit`` / ``after_soft_rollback`` settle the content type ids resolved in the transaction.

Per-flush state lives in ``session.info`` and the flush context, never in module globals.
See https://docs.sqlalchemy.org/en/20/orm/session_events.html#before-flush for the event order.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.orm.unitofwork import UOWTransaction
from ulid import ULID

from . import content_types
from .context import current_context
from .exceptions import ConfigurationError
from .ids import new_ulids
from .models import audit_log_table
from .registry import MASKED, Plan, default_plan, plan_for
from .serialize import encode_value

__all__ = ["disable", "disable_all", "enable", "log_access", "object_id_for"]

_SNAPSHOTS = "auditlog.snapshots"
_TRANSACTION = "auditlog.transaction"
_DONE = "auditlog.done"
_audit_table = audit_log_table

Row = dict[str, Any]


# --- values -------------------------------------------------------------------------------------


def object_id_for(plan: Plan, values: dict[str, Any]) -> str:
    """The primary key as text; composite keys as a compact JSON array of the encoded parts."""
    if len(plan.pk_keys) == 1:
        value = encode_value(values[plan.pk_keys[0]])
        return value if isinstance(value, str) else json.dumps(value)
    return json.dumps([encode_value(values[k]) for k in plan.pk_keys], separators=(",", ":"))


def _encode(plan: Plan, values: dict[str, Any]) -> dict[str, Any]:
    return {key: (MASKED if masked else enc(values.get(key))) for key, enc, masked in plan.fields}


def _load(
    session: Session, plan: Plan, states: Iterable[InstanceState[Any]], keys: set[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Current database values of ``keys`` for ``states``, in one query, keyed by identity."""
    cls = plan.mapper.class_
    pk_keys = plan.pk_keys
    wanted = sorted(keys | set(pk_keys))
    identities = [state.key[1] for state in states if state.key is not None]
    if not identities:
        return {}
    query = sa.select(*(getattr(cls, key) for key in wanted))
    if len(pk_keys) == 1:
        query = query.where(getattr(cls, pk_keys[0]).in_([ident[0] for ident in identities]))
    else:
        query = query.where(sa.tuple_(*(getattr(cls, k) for k in pk_keys)).in_(identities))
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in session.execute(query.execution_options(autoflush=False)).mappings():
        found[tuple(row[k] for k in pk_keys)] = dict(row)
    return found


# --- listeners ----------------------------------------------------------------------------------


def before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Keep the values the flush is about to overwrite or expire, for the before-states."""
    if flush_context.attributes.get(_SNAPSHOTS) is not None:
        return  # enabled on several targets: run once
    snapshots: dict[InstanceState[Any], dict[str, Any]] = {}
    flush_context.attributes[_SNAPSHOTS] = snapshots
    to_load: dict[Plan, tuple[list[InstanceState[Any]], set[str]]] = {}
    for obj in [*session.dirty, *session.deleted]:
        state = instance_state(obj)
        plan = plan_for(state.mapper)
        if plan is None or state.key is None:
            continue
        # the values before this flush: loaded values, with the originals of changed attributes
        before = dict(state.dict)
        before.update(state.committed_state)
        snapshots[state] = before
        missing = {key for key in plan.keys if before.get(key, NO_VALUE) is NO_VALUE}
        if missing:
            entry = to_load.setdefault(plan, ([], set()))
            entry[0].append(state)
            entry[1].update(missing)
    for plan, (states, keys) in to_load.items():
        loaded = _load(session, plan, states, keys)
        for state in states:
            row = loaded.get(state.key[1]) if state.key is not None else None
            if row:
                before = snapshots[state]
                for key in keys:
                    if before.get(key, NO_VALUE) is NO_VALUE:
                        before[key] = row[key]


def _before_values(
    state: InstanceState[Any], snapshot: dict[str, Any] | None, plan: Plan
) -> dict[str, Any]:
    """Values as they were before this flush (from the snapshot when before_flush took one)."""
    if snapshot is None:  # e.g. an object a cascade or another listener added to the flush
        snapshot = dict(state.dict)
        snapshot.update(state.committed_state)
    out: dict[str, Any] = {}
    for key in plan.keys:
        value = snapshot.get(key)
        out[key] = None if value is NO_VALUE else value
    return out


def after_flush(session: Session, flush_context: UOWTransaction) -> None:
    """Build and write one entry per created, changed or deleted registered object."""
    if flush_context.attributes.get(_DONE):
        return
    flush_context.attributes[_DONE] = True
    snapshots: dict[InstanceState[Any], dict[str, Any]] = (
        flush_context.attributes.get(_SNAPSHOTS) or {}
    )
    pending: list[tuple[Plan, str, dict[str, Any] | None, dict[str, Any] | None]] = []
    reload: dict[Plan, tuple[list[InstanceState[Any]], set[str]]] = {}
    afters: dict[InstanceState[Any], dict[str, Any]] = {}
    for state, (isdelete, listonly) in list(flush_context.states.items()):
        if listonly:
            continue
        plan = plan_for(state.mapper)
        if plan is None:
            continue
        snapshot = snapshots.get(state)
        if isdelete:
            pending.append((plan, "delete", _before_values(state, snapshot, plan), None))
            continue
        values = state.dict
        expired = state.expired_attributes
        after = {}
        stale = set()
        for key in plan.keys:
            if key in values:
                after[key] = values[key]
            elif key in expired:
                stale.add(key)
            elif state.key is not None and snapshot is not None and key in snapshot:
                after[key] = snapshot[key]  # unloaded and unchanged
            else:
                after[key] = None
        if stale:
            entry = reload.setdefault(plan, ([], set()))
            entry[0].append(state)
            entry[1].update(stale)
        afters[state] = after
        if state.key is None:
            pending.append((plan, "create", None, after))
        else:
            pending.append((plan, "update", _before_values(state, snapshot, plan), after))
    if not pending:
        return
    for plan, (states, keys) in reload.items():
        loaded = _load_after_insert(session, plan, states, keys)
        for state in states:
            ident = _identity(plan, afters[state])
            afters[state].update({k: v for k, v in loaded.get(ident, {}).items() if k in keys})
    _write(session, pending)


def _identity(plan: Plan, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values.get(k) for k in plan.pk_keys)


def _load_after_insert(
    session: Session, plan: Plan, states: list[InstanceState[Any]], keys: set[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Like _load, but keyed from the state's primary key values (new objects have no key yet)."""
    cls = plan.mapper.class_
    pk_keys = plan.pk_keys
    idents = [tuple(state.dict.get(k) for k in pk_keys) for state in states]
    wanted = sorted(keys | set(pk_keys))
    query = sa.select(*(getattr(cls, key) for key in wanted))
    if len(pk_keys) == 1:
        query = query.where(getattr(cls, pk_keys[0]).in_([i[0] for i in idents]))
    else:
        query = query.where(sa.tuple_(*(getattr(cls, k) for k in pk_keys)).in_(idents))
    rows = session.execute(query.execution_options(autoflush=False)).mappings()
    return {tuple(row[k] for k in pk_keys): dict(row) for row in rows}


def _changed(plan: Plan, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [key for key, enc, _ in plan.fields if enc(before.get(key)) != enc(after.get(key))]


def _transaction_id(session: Session) -> bytes:
    root = session.get_transaction()
    held = session.info.get(_TRANSACTION)
    if held is not None and held[0] is root:
        return held[1]  # type: ignore[no-any-return]
    txid = ULID().bytes
    session.info[_TRANSACTION] = (root, txid)
    return txid


def _write(
    session: Session,
    pending: list[tuple[Plan, str, dict[str, Any] | None, dict[str, Any] | None]],
) -> None:
    ctx = current_context()
    now = dt.datetime.now(dt.timezone.utc)
    extra = encode_value(dict(ctx.extra)) if ctx.extra else None
    txid = _transaction_id(session)
    by_connection: dict[Connection, list[Row]] = {}
    connections: dict[Plan, Connection] = {}
    for plan, action, before, after in pending:
        changed = None
        if action == "update":
            assert before is not None and after is not None
            changed = _changed(plan, before, after)
            if not changed:
                continue
        connection = connections.get(plan)
        if connection is None:
            connection = session.connection(bind_arguments={"mapper": plan.mapper})
            connections[plan] = connection
        values = after if after is not None else before
        assert values is not None
        by_connection.setdefault(connection, []).append(
            {
                "tenant_id": ctx.tenant_id,
                "user_id": ctx.user_id,
                "action_type": action,
                "timestamp": now,
                "ip_address": ctx.ip_address,
                "user_agent": ctx.user_agent or "",
                "object_id": object_id_for(plan, values),
                "content_type": content_types.content_type_id(session, connection, plan),
                "before_state": None if before is None else _encode(plan, before),
                "after_state": None if after is None else _encode(plan, after),
                "changed_fields": changed,
                "transaction_id": txid,
                "extra": extra,
            }
        )
    for connection, rows in by_connection.items():
        for row, ulid in zip(rows, new_ulids(now, len(rows)), strict=True):
            row["id"] = ulid
        connection.execute(_audit_table.insert(), rows)


def after_commit(session: Session) -> None:
    content_types.promote_pending(session)


def after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    content_types.forget_pending(session)


_LISTENERS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("before_flush", before_flush),
    ("after_flush", after_flush),
    ("after_commit", after_commit),
    ("after_soft_rollback", after_soft_rollback),
)


# --- explicit entries ---------------------------------------------------------------------------


def log_access(session: Session | AsyncSession, obj: Any) -> str:
    """Record an ``access`` entry for ``obj`` in the session's transaction; returns the entry id.

    A pending object is flushed first so that it has a primary key. Works for any mapped object,
    registered or not; the entry's states are null.
    """
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    state = instance_state(obj)
    if state.session_id != sync.hash_key:
        raise ConfigurationError(f"log_access(): {obj!r} is not in this session")
    if state.key is None:
        sync.flush()
    plan = plan_for(state.mapper) or default_plan(state.mapper)
    connection = sync.connection(bind_arguments={"mapper": plan.mapper})
    ctx = current_context()
    now = dt.datetime.now(dt.timezone.utc)
    (ulid,) = new_ulids(now, 1)
    connection.execute(
        _audit_table.insert(),
        {
            "id": ulid,
            "tenant_id": ctx.tenant_id,
            "user_id": ctx.user_id,
            "action_type": "access",
            "timestamp": now,
            "ip_address": ctx.ip_address,
            "user_agent": ctx.user_agent or "",
            "object_id": object_id_for(plan, {k: state.dict.get(k) for k in plan.pk_keys}),
            "content_type": content_types.content_type_id(sync, connection, plan),
            "before_state": None,
            "after_state": None,
            "changed_fields": None,
            "transaction_id": _transaction_id(sync),
            "extra": encode_value(dict(ctx.extra)) if ctx.extra else None,
        },
    )
    return str(ULID.from_bytes(ulid))


# --- enabling -----------------------------------------------------------------------------------

_enabled: list[Any] = []


def _listen_target(target: Any, *, create: bool) -> Any:
    """The object SQLAlchemy's session events attach to for ``target``."""
    if target is None:
        return Session
    if isinstance(target, AsyncSession):
        return target.sync_session
    if isinstance(target, async_sessionmaker):
        # Listening on its sync class (Session by default) would audit every session: give the
        # maker a private subclass to listen on instead.
        current = target.kw.get("sync_session_class", AsyncSession.sync_session_class)
        if getattr(current, "_auditlog_private", False) or not create:
            return current
        private = type(current.__name__, (current,), {"_auditlog_private": True})
        target.kw["sync_session_class"] = private
        return private
    if isinstance(target, type) and issubclass(target, AsyncSession):
        return target.sync_session_class
    if isinstance(target, (Session, sessionmaker, scoped_session)) or (
        isinstance(target, type) and issubclass(target, Session)
    ):
        return target
    raise ConfigurationError(
        f"enable()/disable(): cannot audit {target!r}; give a Session subclass or instance, a "
        "sessionmaker, a scoped_session, an async_sessionmaker or an AsyncSession"
    )


def enable(target: Any = None) -> None:
    """Capture flushes of registered models on ``target`` (every session when None). Idempotent."""
    listen_on = _listen_target(target, create=True)
    for name, fn in _LISTENERS:
        if not event.contains(listen_on, name, fn):
            event.listen(listen_on, name, fn)
    if not any(t is listen_on for t in _enabled):
        _enabled.append(listen_on)


def disable(target: Any = None) -> None:
    """Stop capturing on ``target`` (the every-session capture when None): listeners are removed."""
    listen_on = _listen_target(target, create=False)
    for name, fn in _LISTENERS:
        if event.contains(listen_on, name, fn):
            event.remove(listen_on, name, fn)
    _enabled[:] = [t for t in _enabled if t is not listen_on]


def disable_all() -> None:
    """Remove every listener enable() attached, whatever its target."""
    for listen_on in list(_enabled):
        for name, fn in _LISTENERS:
            if event.contains(listen_on, name, fn):
                event.remove(listen_on, name, fn)
    _enabled.clear()
