"""The unit of work's listeners: one entry per created, changed or deleted registered object.

- ``before_flush`` keeps the values each dirty registered object had before the flush (the
  flush may expire some, e.g. server ``onupdate`` columns) and loads in one query per model what
  SQLAlchemy does not hold, the same for objects about to be deleted (those a delete cascades to
  included); a row already gone (deleted by another transaction) gets no entry
  (:mod:`.deletes`).
- ``after_flush`` runs after the SQL, while attribute history still shows what changed: each
  change is built as its entry is written (on PostgreSQL, while ``COPY`` streams, so the Python
  work overlaps the server's); the few whose values the database set during the flush are read
  back in one query per model and written after the others. An error fails the flush, so no
  change is committed unaudited.
- ``after_flush_postexec`` / ``after_soft_rollback`` end the span in which writes count as audited
  (a flush that ends without either, having nothing to write or failing early, ends it anyway:
  :mod:`.span`).

Per-flush state lives in the flush context, never in module globals; see
https://docs.sqlalchemy.org/en/20/orm/session_events.html for the order of these events.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.orm.unitofwork import UOWTransaction

from ..registry import Plan, cascades_deletes, plan_for
from ..serialize import TimeForm, kept_as_held
from .deletes import DeleteCheck, check_deletes
from .entries import Change, write_changes
from .ids import ulid_stream
from .rows import Values, before_values, identity_of, load_columns, missing_before
from .span import begin_flush, end_flush

__all__ = [
    "SNAPSHOTS",
    "after_flush",
    "after_flush_postexec",
    "after_soft_rollback",
    "before_flush",
]

#: Where ``before_flush`` keeps its snapshots: present exactly in the flushes auditlog sees.
SNAPSHOTS = "auditlog.snapshots"
_DONE = "auditlog.done"
_GONE = "auditlog.gone"


def before_flush(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Keep what the flush is about to overwrite or expire, for the before-states."""
    if SNAPSHOTS in flush_context.attributes:
        return  # enabled on several targets: run once
    snapshots: dict[InstanceState[Any], Values] = {}
    flush_context.attributes[SNAPSHOTS] = snapshots
    begin_flush(session)
    to_load: dict[Plan, list[tuple[InstanceState[Any], set[str]]]] = {}
    doomed: dict[Plan, list[InstanceState[Any]]] = {}
    dooming: set[InstanceState[Any]] = set()

    def keep(state: InstanceState[Any], plan: Plan) -> None:
        before = snapshots[state] = before_values(state)
        missing = missing_before(plan, state, before)
        if missing:
            to_load.setdefault(plan, []).append((state, missing))

    def doom(state: InstanceState[Any], plan: Plan) -> None:
        if state in dooming:
            return
        dooming.add(state)
        keep(state, plan)
        doomed.setdefault(plan, []).append(state)

    for obj in session.dirty:
        state = instance_state(obj)
        plan = plan_for(state.mapper)
        if plan is not None and state.key is not None:
            keep(state, plan)
        for orphan in _orphans(state):  # removed from a delete-orphan collection: deleted
            orphan_plan = plan_for(orphan.mapper)
            if orphan_plan is not None:
                doom(orphan, orphan_plan)
    for obj in session.deleted:
        state = instance_state(obj)
        if state.key is None:
            continue
        plan = plan_for(state.mapper)
        if plan is not None:
            doom(state, plan)
        if not cascades_deletes(state.mapper):
            continue
        # objects the delete cascades to (not when passive_deletes leaves them to the database)
        for _, mapper, child, _ in state.mapper.cascade_iterator("delete", state):
            child_plan = plan_for(mapper)
            if child_plan is not None and child.key is not None:
                doom(child, child_plan)
    for plan, pending in to_load.items():
        keys = set().union(*(missing for _, missing in pending))
        loaded = load_columns(session, plan, (identity_of(s) for s, _ in pending), keys)
        for state, missing in pending:
            row = loaded.get(identity_of(state))
            if row is not None:
                snapshots[state].update({key: row[key] for key in missing})
    # A row another transaction already deleted is not deleted by this flush, and gets no entry.
    if doomed:
        flush_context.attributes[_GONE] = check_deletes(session, doomed)


#: each mapper's delete-orphan relationships
_ORPHANING: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _orphans(state: InstanceState[Any]) -> Iterator[InstanceState[Any]]:
    """The persistent objects removed from ``state``'s delete-orphan collections that belong
    to no other parent: the flush deletes them, though they are in neither ``session.dirty``
    nor ``session.deleted`` before it."""
    keys = _ORPHANING.get(state.mapper)
    if keys is None:
        keys = _ORPHANING[state.mapper] = tuple(
            r.key for r in state.mapper.relationships if r.cascade.delete_orphan
        )
    for key in keys:
        for child in state.attrs[key].history.deleted or ():
            child_state = instance_state(child)
            if child_state.key is not None and child_state.mapper._is_orphan(child_state):
                yield child_state


def after_flush(session: Session, flush_context: UOWTransaction) -> None:
    """Write one entry per created, changed or deleted registered object of this flush."""
    if flush_context.attributes.get(_DONE):
        return
    flush_context.attributes[_DONE] = True
    audited: list[tuple[InstanceState[Any], bool, Plan]] = []
    for state, (isdelete, listonly) in flush_context.states.items():
        if not listonly:
            plan = plan_for(state.mapper)
            if plan is not None:
                audited.append((state, isdelete, plan))
    if not audited:
        return
    # The objects this flush inserts: still the session's new ones until the flush is over. Not
    # "no identity key yet": with eager_defaults and no RETURNING, SQLAlchemy gives a new object
    # its key while it fetches the server's values, before this event.
    new = {instance_state(obj) for obj in session.new}
    audited = _in_write_order(audited, new)
    deletes: DeleteCheck | None = flush_context.attributes.get(_GONE)
    changes = _FlushChanges(
        session,
        audited,
        new,
        flush_context.attributes.get(SNAPSHOTS) or {},
        _reread(audited, new),
        deletes.gone(session, _deleting(flush_context)) if deletes is not None else set(),
    )
    # one time and one id sequence for the whole flush, read-back changes included
    now = dt.datetime.now(dt.timezone.utc)
    ids = ulid_stream(now, len(audited))  # at most one entry per audited object
    write_changes(session, changes, changes.plans, len(audited), at=now, ids=ids)
    write_changes(session, changes.read_back(session), at=now, ids=ids)


#: per object whose flush read back a value it holds in another type than its row stores it
#: ("30" for 30): attribute -> (that value, the stored one), for its later entries
_CONVERTED: weakref.WeakKeyDictionary[InstanceState[Any], dict[str, tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)
#: whether any object ever had such a value: until then no flush looks (a look costs)
_SEEN_CONVERTED = False


def _deleting(flush_context: UOWTransaction) -> Iterator[InstanceState[Any]]:
    """Every object the flush deletes, registered or not."""
    for state, (isdelete, listonly) in flush_context.states.items():
        if isdelete and not listonly:
            yield state


def _in_write_order(
    audited: list[tuple[InstanceState[Any], bool, Plan]], new: set[InstanceState[Any]]
) -> list[tuple[InstanceState[Any], bool, Plan]]:
    """The flush's objects in a stable order (the unit of work holds them in sets): new objects
    in the order they were added, as SQLAlchemy inserts them; then the others model by model,
    by primary key. Entry ids follow this order."""
    if len(audited) < 2:
        return audited
    inserted = [item for item in audited if item[0] in new]
    inserted.sort(key=lambda item: item[0].insert_order or 0)
    models: dict[Any, list[tuple[InstanceState[Any], bool, Plan]]] = {}
    for item in audited:
        if item[0] not in new:
            models.setdefault(item[0].mapper, []).append(item)
    for items in models.values():
        # primary keys Python cannot compare stay as the unit of work gave them
        with contextlib.suppress(TypeError):
            items.sort(key=lambda item: item[0].key[1])  # type: ignore[index]
        inserted.extend(items)
    return inserted


def after_flush_postexec(session: Session, flush_context: UOWTransaction) -> None:
    """The flush's own writes are over."""
    end_flush(session)


def after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    """A failed flush ends here, without after_flush_postexec: its writes are over too."""
    end_flush(session)


def _reread(
    audited: list[tuple[InstanceState[Any], bool, Plan]], new: set[InstanceState[Any]]
) -> dict[Plan, frozenset[str]]:
    """Values to read back from the rows rather than the objects: those of Python ``onupdate``
    callables when a flush updates several objects of a model (SQLAlchemy's batched UPDATE
    gives every object of the batch the first row's value)."""
    updates: dict[Plan, int] = {}
    for state, isdelete, plan in audited:
        if plan.called_onupdate and not isdelete and state not in new:
            updates[plan] = updates.get(plan, 0) + 1
    return {plan: plan.called_onupdate for plan, count in updates.items() if count > 1}


@dataclass(slots=True)
class _Stale:
    """A change some of whose values must be read from the row first."""

    change: Change
    pk: tuple[Any, ...]  # the primary key as it is now (an update may have changed it)
    reload: set[str]  # set by the database during the flush: after-values to read
    unloaded: set[str]  # never loaded and unchanged: the same on both sides
    state: InstanceState[Any] | None = None
    #: values the object holds in another type than the row stores them ("30" for 30): read
    #: back, and remembered so that later entries of the object hold the stored value too
    converted: dict[str, Any] | None = None


class _FlushChanges:
    """The changes of one flush, built one by one as they are iterated.

    A change whose values are all held is yielded; one that needs values the database set or
    that were never loaded is set aside, and :meth:`read_back` completes those once the
    iteration is over.
    """

    def __init__(
        self,
        session: Session,
        audited: list[tuple[InstanceState[Any], bool, Plan]],
        new: set[InstanceState[Any]],
        snapshots: dict[InstanceState[Any], Values],
        reread: dict[Plan, frozenset[str]],
        gone: set[InstanceState[Any]],
    ) -> None:
        self.audited = audited
        self.new = new
        self.snapshots = snapshots
        self.reread = reread
        self.gone = gone
        self.plans = {plan for _, _, plan in audited}
        # per model, its temporal columns that may not keep a value as held, on the database
        # its rows are written to
        self._times = {
            plan: plan.time_forms_on(session.get_bind(mapper=plan.mapper).dialect)
            for plan in self.plans
            if plan.temporal
        }
        self._stale: dict[Plan, list[_Stale]] = {}
        self._iterated = False

    def __iter__(self) -> Iterator[Change]:
        for state, isdelete, plan in self.audited:
            snapshot = self.snapshots.get(state)
            converted = _CONVERTED.get(state) if _SEEN_CONVERTED else None
            if isdelete:
                if state in self.gone:
                    continue  # deleted before this flush, by another transaction
                before = _before(state, snapshot, plan)
                pk = identity_of(state)
                if converted:
                    _as_stored(before, converted)
                    pk = _stored_key(plan, pk, converted)
                yield Change(plan, "delete", pk, before, None)
                continue
            change, stale = _change_of(
                state,
                plan,
                snapshot,
                self.reread.get(plan),
                is_new=state in self.new,
                times=self._times.get(plan, ()),
            )
            if converted:
                _as_stored(change.after, converted)
                if change.before is not None:
                    _as_stored(change.before, converted)
                change.pk = _stored_key(plan, change.pk, converted)
            if stale is None:
                yield change
            else:
                self._stale.setdefault(plan, []).append(stale)
        self._iterated = True

    def read_back(self, session: Session) -> list[Change]:
        """The changes set aside, completed from their rows: one query per model."""
        if not self._iterated:
            raise RuntimeError("read_back() needs every change built first")
        completed: list[Change] = []
        for plan, pending in self._stale.items():
            keys = set().union(*(s.reload | s.unloaded for s in pending))
            loaded = load_columns(session, plan, (s.pk for s in pending), keys)
            for stale in pending:
                row = loaded.get(stale.pk, {})
                change = stale.change
                assert change.after is not None
                change.after.update({key: row.get(key) for key in stale.reload | stale.unloaded})
                if change.before is not None:
                    change.before.update({key: row.get(key) for key in stale.unloaded})
                if stale.converted and stale.state is not None and row:
                    _remember(stale.state, stale.converted, row)
                    if not plan.pk_set.isdisjoint(stale.converted):
                        _key_as_stored(plan, change, stale, row)
                completed.append(change)
        return completed


def _before(state: InstanceState[Any], snapshot: Values | None, plan: Plan) -> Values:
    """Values of the recorded attributes before this flush."""
    source = snapshot if snapshot is not None else before_values(state)
    get = source.get
    return {key: None if (value := get(key)) is NO_VALUE else value for key in plan.keys}


def _keep_unwritten(
    state: InstanceState[Any],
    plan: Plan,
    committed: dict[str, Any],
    before: Values,
    after: Values,
) -> None:
    """An assigned value the column's type compares equal to the loaded one (``Decimal("1.0")``
    over ``1.00``, ``{"a": 1.0}`` over ``{"a": 1}``) is not written by the flush's UPDATE: the
    row keeps its value, and so does the after-state."""
    manager = state.manager
    for key, old in committed.items():
        if key not in plan.keys or old is NO_VALUE:
            continue
        new = after.get(key, NO_VALUE)
        # the comparison SQLAlchemy's UPDATE makes (it has already made it, without failing);
        # a SQL expression compares as an expression, never True, and is written
        if new is not old and new is not NO_VALUE and manager[key].impl.is_equal(new, old) is True:
            after[key] = before[key]


def _change_of(
    state: InstanceState[Any],
    plan: Plan,
    snapshot: Values | None,
    reread: frozenset[str] | None,
    *,
    is_new: bool,
    times: tuple[tuple[str, TimeForm], ...] = (),
) -> tuple[Change, _Stale | None]:
    """The create or update of one object, and what of it must be read back (None when nothing):
    what the database set during the flush, and the ``reread`` values of an update."""
    current = state.dict
    after: Values
    reload: set[str] = set(reread) if reread and not is_new else set()
    unloaded: set[str] = set()
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
            elif not is_new:
                unloaded.add(key)
            else:
                after[key] = None  # a new object's attribute that was never set
    if is_new:
        for key, _ in plan.collections:
            after[key] = current.get(key)
        change = Change(plan, "create", identity_of(state), None, after)
    else:
        before = _before(state, snapshot, plan)
        committed = state.committed_state
        for key, _ in plan.collections:  # the recorded collections the update changed
            if key in committed:
                before[key] = committed[key]
                after[key] = current.get(key)
        _keep_unwritten(state, plan, committed, before, after)
        change = Change(plan, "update", identity_of(state), before, after)
        if not plan.pk_set.isdisjoint(committed):  # the update may change the primary key
            now = tuple(current.get(k, v) for k, v in zip(plan.pk_keys, change.pk, strict=True))
            if now != change.pk:
                change.renamed_to = now
    converted = _converted(plan, after, None if is_new else state.committed_state, times)
    if converted:
        reload.update(converted)
    if not (reload or unloaded):
        return change, None
    pk_now = tuple(current.get(k, v) for k, v in zip(plan.pk_keys, change.pk, strict=True))
    return change, _Stale(change, pk_now, reload, unloaded, state, converted)


def _converted(
    plan: Plan,
    after: Values,
    written: Mapping[str, Any] | None,
    times: tuple[tuple[str, TimeForm], ...] = (),
) -> dict[str, Any] | None:
    """The values the flush wrote (every one of a new object; ``written``, the attributes an
    update changed) that the object holds in another form than its column stores them
    (``"30"`` in an integer column, ``2.5`` or ``Decimal("1.005")`` in a ``Numeric(10, 2)``,
    a datetime with microseconds in a MariaDB ``DATETIME``, ``times``): the database converted
    them, so the entry reads them from the row."""
    found = _held_in_other_forms(plan, after, written)
    for key, form in times:
        value = after.get(key)
        if (
            isinstance(value, _TEMPORAL)
            and (written is None or key in written)
            and not kept_as_held(value, form)
        ):
            found = found or {}
            found[key] = value
    return found


def _held_in_other_forms(
    plan: Plan, after: Values, written: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """What :func:`_converted` finds besides datetimes and times: values of another type than
    their column stores, decimals with more places than their column's scale."""
    found: dict[str, Any] | None = None
    if written is None:  # a new object: its value types are most often ones seen before
        try:
            seen = tuple(map(type, plan.form_values(after)))
        except KeyError:  # a value the database set, read back anyway
            seen = tuple(map(type, map(after.get, plan.form_keys)))
        if seen not in plan.fine_types:
            found = _other_types(plan, after, plan.form_keys)
            if found is None and len(plan.fine_types) < 64:
                plan.fine_types.add(seen)
        for key, last in plan.decimal_places:
            value = after.get(key)
            if isinstance(value, _FRACTIONAL) and not _within(value, last):
                found = found or {}
                found[key] = value
        return found
    found = _other_types(plan, after, [key for key in written if key in plan.stored_forms])
    for key, last in plan.decimal_places:
        value = after.get(key)
        if key in written and isinstance(value, _FRACTIONAL) and not _within(value, last):
            found = found or {}
            found[key] = value
    return found


def _other_types(plan: Plan, after: Values, keys: Iterable[str]) -> dict[str, Any] | None:
    """The values of ``keys`` of another type than their column stores."""
    found: dict[str, Any] | None = None
    for key in keys:
        value = after.get(key)
        if value is None:
            continue
        types, _ = plan.stored_forms[key]
        kind = type(value)
        if kind in types or (isinstance(value, types) and kind is not bool):
            continue  # a subclass (a StrEnum in a string column): the encoder knows it
        if found is None:
            found = {}
        found[key] = value
    return found


_FRACTIONAL = (Decimal, float)
_TEMPORAL = (dt.datetime, dt.time)


def _within(value: Decimal | float, last: Decimal) -> bool:
    """Whether a number has no digit past the place of ``last`` (``Decimal("0.01")``), so
    that its column keeps it as it is (a float by its shortest text: 2.675 has three)."""
    try:
        number = value if type(value) is Decimal else Decimal(repr(value))
        return number.quantize(last) == number
    except ArithmeticError:  # not finite, or more digits than a decimal context holds
        return False


def _remember(state: InstanceState[Any], converted: dict[str, Any], row: Values) -> None:
    """Keep, for the object's later entries, the values its row stored for ``converted``."""
    global _SEEN_CONVERTED
    _SEEN_CONVERTED = True
    remembered = _CONVERTED.setdefault(state, {})
    held_now = state.dict
    for key, held in converted.items():
        # the object's own value: an equal one it was given again is not written, and the
        # after-state then holds the earlier object, not the one the object holds now
        remembered[key] = (held_now.get(key, held), row.get(key))


def _key_as_stored(plan: Plan, change: Change, stale: _Stale, row: Values) -> None:
    """A key the object holds in another type than its row (``"030"`` for 30): a new object's
    entry is filed under the stored key, and an update that set it names it only if the row's
    key changed."""
    converted = stale.converted or {}
    stored = tuple(
        row[key] if key in converted and key in row else held
        for key, held in zip(plan.pk_keys, stale.pk, strict=True)
    )
    if change.action == "create":
        change.pk = stored
    else:
        change.renamed_to = stored if stored != change.pk else None


def _stored_key(
    plan: Plan, pk: tuple[Any, ...], converted: dict[str, tuple[Any, Any]]
) -> tuple[Any, ...]:
    """``pk`` with each part the object holds in another type than stored replaced by the
    stored one, while the object still holds that very value."""
    if plan.pk_set.isdisjoint(converted):
        return pk
    return tuple(
        converted[key][1] if key in converted and held is converted[key][0] else held
        for key, held in zip(plan.pk_keys, pk, strict=True)
    )


def _as_stored(values: Values | None, converted: dict[str, tuple[Any, Any]]) -> None:
    """Replace in ``values`` each value held in another type than stored, while the object
    still holds that very value, by the one the row stored for it."""
    if values is None:
        return
    for key, (held, stored) in converted.items():
        if key in values and values[key] is held:
            values[key] = stored
