"""Session listeners that turn changes of registered models into ``audit_log`` rows.

- ``before_flush`` keeps the values each dirty or deleted registered object had before the flush
  (the flush may expire some, e.g. server ``onupdate`` columns), including objects a delete will
  cascade to, and loads in one query per model what SQLAlchemy does not hold.
- ``after_flush`` runs after the SQL, while attribute history still shows what changed: one entry
  per created, changed or deleted object; after-values the flush expired (server defaults, SQL
  expressions) are read back in one query per model; all entries go in one INSERT on the flush's
  own connection. An error there fails the flush, so no change is committed unaudited.
- ``do_orm_execute`` captures ORM-enabled ``update()``, ``delete()`` and ``insert()`` statements
  (see :mod:`auditlog.statements`); ``after_begin`` marks the session's connections so that Core
  statements and the legacy ``bulk_*`` methods on them are captured too (:mod:`auditlog.core`).
- ``after_flush_postexec`` / ``after_soft_rollback`` end the span in which writes count as audited
  (see :mod:`auditlog.guard`).

Per-flush state lives in the flush context, never in module globals; see
https://docs.sqlalchemy.org/en/20/orm/session_events.html for the order of these events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.orm.unitofwork import UOWTransaction

from . import core, guard
from ._asyncio import AsyncSession, async_sessionmaker
from .entries import Change, log_access, write_changes
from .exceptions import ConfigurationError
from .ids import ulid_stream
from .registry import Plan, cascades_deletes, plan_for
from .statements import do_orm_execute
from .states import before_values, identity_of, load_columns, missing_before

__all__ = ["disable", "disable_all", "enable", "log_access"]

_SNAPSHOTS = "auditlog.snapshots"
_DONE = "auditlog.done"
_GUARD = "auditlog.guard"

Values = dict[str, Any]


def before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Keep what the flush is about to overwrite or expire, for the before-states."""
    if _SNAPSHOTS in flush_context.attributes:
        return  # enabled on several targets: run once
    snapshots: dict[InstanceState[Any], Values] = {}
    flush_context.attributes[_SNAPSHOTS] = snapshots
    flush_context.attributes[_GUARD] = guard.begin_audited_write()
    to_load: dict[Plan, list[tuple[InstanceState[Any], set[str]]]] = {}

    def keep(state: InstanceState[Any], plan: Plan) -> None:
        before = snapshots[state] = before_values(state)
        missing = missing_before(plan, state, before)
        if missing:
            to_load.setdefault(plan, []).append((state, missing))

    for obj in session.dirty:
        state = instance_state(obj)
        plan = plan_for(state.mapper)
        if plan is not None and state.key is not None:
            keep(state, plan)
    for obj in session.deleted:
        state = instance_state(obj)
        if state.key is None:
            continue
        plan = plan_for(state.mapper)
        if plan is not None:
            keep(state, plan)
        if not cascades_deletes(state.mapper):
            continue
        # objects the delete cascades to (not when passive_deletes leaves them to the database)
        for _, mapper, child, _ in state.mapper.cascade_iterator("delete", state):
            child_plan = plan_for(mapper)
            if child_plan is not None and child.key is not None and child not in snapshots:
                keep(child, child_plan)
    for plan, pending in to_load.items():
        keys = set().union(*(missing for _, missing in pending))
        loaded = load_columns(session, plan, (identity_of(s) for s, _ in pending), keys)
        for state, missing in pending:
            row = loaded.get(identity_of(state))
            if row is not None:
                snapshots[state].update({key: row[key] for key in missing})


def _before(state: InstanceState[Any], snapshot: Values | None, plan: Plan) -> Values:
    """Values of the recorded attributes before this flush."""
    source = snapshot if snapshot is not None else before_values(state)
    get = source.get
    return {key: None if (value := get(key)) is NO_VALUE else value for key in plan.keys}


def _collections_changed(
    plan: Plan, state: InstanceState[Any], before: Values, after: Values
) -> None:
    """Add the recorded collections an update changed, on both sides."""
    committed = state.committed_state
    for key, _ in plan.collections:
        if key in committed:
            before[key] = committed[key]
            after[key] = state.dict.get(key)


def after_flush(session: Session, flush_context: UOWTransaction) -> None:
    """Build and write one entry per created, changed or deleted registered object.

    The entries are built while they are written (see :func:`entries.write_changes`); the few
    whose after-values the database set during the flush are read back first and written after.
    """
    if flush_context.attributes.get(_DONE):
        return
    flush_context.attributes[_DONE] = True
    snapshots: dict[InstanceState[Any], Values] = flush_context.attributes.get(_SNAPSHOTS) or {}
    audited: list[tuple[InstanceState[Any], bool, Plan]] = []
    for state, (isdelete, listonly) in flush_context.states.items():
        if not listonly:
            plan = plan_for(state.mapper)
            if plan is not None:
                audited.append((state, isdelete, plan))
    if not audited:
        return
    stale: dict[Plan, list[tuple[Change, tuple[Any, ...], set[str], set[str]]]] = {}

    def changes() -> Iterator[Change]:
        for state, isdelete, plan in audited:
            snapshot = snapshots.get(state)
            if isdelete:
                yield Change(
                    plan, "delete", identity_of(state), _before(state, snapshot, plan), None
                )
                continue
            current = state.dict
            after: Values
            reload: set[str] = set()  # set by the database during the flush
            unloaded: set[str] = set()  # never loaded and unchanged: the same on both sides
            if plan.keys.issubset(current):  # the usual case: every recorded value is held
                after = {key: current[key] for key in plan.keys}
            else:
                after = {}
                expired = state.expired_attributes
                for key in plan.keys:
                    if key in current:
                        after[key] = current[key]
                    elif key in expired:
                        reload.add(key)
                    elif snapshot is not None and key in snapshot:
                        after[key] = snapshot[key]
                    elif state.key is not None:
                        unloaded.add(key)
                    else:
                        after[key] = None  # a new object's attribute that was never set
            if state.key is None:
                for key, _ in plan.collections:
                    after[key] = current.get(key)
                change = Change(plan, "create", identity_of(state), None, after)
            else:
                before = _before(state, snapshot, plan)
                _collections_changed(plan, state, before, after)
                change = Change(plan, "update", identity_of(state), before, after)
            if reload or unloaded:
                # read by the primary key as it is now (an update may have changed it)
                pk_now = tuple(
                    current.get(k, v) for k, v in zip(plan.pk_keys, change.pk, strict=True)
                )
                stale.setdefault(plan, []).append((change, pk_now, reload, unloaded))
                continue  # written once its values are read
            yield change

    # one time and one id sequence for the whole flush, read-back changes included
    now = dt.datetime.now(dt.timezone.utc)
    ids = ulid_stream(now, len(audited))  # at most one entry per audited object
    plans = {plan for _, _, plan in audited}
    write_changes(session, changes(), plans, len(audited), at=now, ids=ids)
    completed: list[Change] = []
    for plan, pending in stale.items():
        keys = set().union(*(r | u for _, _, r, u in pending))
        loaded = load_columns(session, plan, (pk for _, pk, _, _ in pending), keys)
        for change, pk, reload, unloaded in pending:
            row = loaded.get(pk, {})
            assert change.after is not None
            change.after.update({key: row.get(key) for key in reload | unloaded})
            if change.before is not None:
                change.before.update({key: row.get(key) for key in unloaded})
            completed.append(change)
    write_changes(session, completed, at=now, ids=ids)


def after_flush_postexec(session: Session, flush_context: UOWTransaction) -> None:
    """The flush's own writes are over."""
    token = flush_context.attributes.pop(_GUARD, None)
    if token is not None:
        guard.end_audited_write(token)


def after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    """A failed flush ends here, without after_flush_postexec: its writes are over too."""
    guard.end_audited_write()


_LISTENERS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("before_flush", before_flush),
    ("after_flush", after_flush),
    ("after_flush_postexec", after_flush_postexec),
    ("do_orm_execute", do_orm_execute),
    ("after_begin", core.after_begin),
    ("after_soft_rollback", after_soft_rollback),
)

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
    """Capture changes of registered models on ``target`` (every session when None). Idempotent."""
    listen_on = _listen_target(target, create=True)
    for name, fn in _LISTENERS:
        if not event.contains(listen_on, name, fn):
            event.listen(listen_on, name, fn)
    if not any(t is listen_on for t in _enabled):
        _enabled.append(listen_on)


def disable(target: Any = None) -> None:
    """Stop capturing on ``target``; with no target, on every session (all listeners removed)."""
    if target is None:
        disable_all()
        return
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
