"""Undoing entries: one entry, or every entry of one database transaction.

A revert is an ordinary change on the caller's session: it is flushed (so that its own entries
are written, marked with what they revert in ``extra``) but never committed by auditlog.

- an update restores the before-values of the attributes it changed;
- a create deletes the object;
- a delete creates the object again from its before-state (masked and unrecorded attributes take
  their defaults; a required one without a default is a :class:`~auditlog.RevertError`).

If a later entry changed what the revert would restore, it raises :class:`~auditlog.RevertConflict`
naming the attributes, unless ``force=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.orm import Mapper, RelationshipProperty, Session

from ..context import audit_context
from ..documents import Unreadable, readable
from ..exceptions import RevertConflict, RevertError
from ..models import audit_log_table as _t
from ..models import content_type_table, ulid_hex
from ..registry import mapper_named
from ..serialize import MASKED, decode_state, identity_of_object_id
from ..ulids import ulid_text

__all__ = ["revert", "revert_transaction"]

_ENTRY = (
    _t.c.id, _t.c.timestamp, _t.c.action_type, _t.c.object_id, _t.c.renamed_to,
    readable(_t.c.before_state), readable(_t.c.after_state), readable(_t.c.changed_fields),
    _t.c.transaction_id,
    content_type_table.c.name.label("model"), _t.c.content_type,
)  # fmt: skip
_JOINED = _t.join(content_type_table, _t.c.content_type == content_type_table.c.id)


def _entries(session: Session, where: Any) -> list[Row[Any]]:
    query = sa.select(*_ENTRY).select_from(_JOINED).where(where)
    rows: list[Row[Any]] = list(
        session.execute(query.order_by(_t.c.timestamp.desc(), _t.c.id.desc()))
    )
    for row in rows:
        for name in ("before_state", "after_state", "changed_fields"):
            value = getattr(row, name)
            if isinstance(value, Unreadable):
                raise RevertError(
                    f"entry {row.id}: its {name} is not JSON ({value.error}), so what it "
                    "recorded cannot be read; nothing was reverted"
                )
    return rows


def _after(entry: Row[Any]) -> Any:
    at, ident = entry.timestamp, entry.id
    return sa.or_(_t.c.timestamp > at, sa.and_(_t.c.timestamp == at, _t.c.id > ident))


def _later(session: Session, entry: Row[Any], skip: frozenset[str]) -> list[Row[Any]]:
    """The entries after ``entry`` that changed its object, oldest first, following the object
    through changes of its key; ``skip`` leaves out entries being reverted too."""
    found: list[Row[Any]] = []
    key = entry.renamed_to or entry.object_id
    since = entry
    while True:
        rows = _entries(
            session,
            sa.and_(
                _t.c.content_type == entry.content_type,
                _t.c.object_id == key,
                _t.c.action_type != "access",
                _after(since),
            ),
        )
        rows.reverse()
        moved = None
        for row in rows:
            if row.id in skip:
                continue
            found.append(row)
            if row.renamed_to is not None:
                moved = row
                break
        if moved is None:
            return found
        key, since = moved.renamed_to, moved


def _mapper(entry: Row[Any]) -> Mapper[Any]:
    mapper = mapper_named(entry.model)
    if mapper is None:
        raise RevertError(
            f"entry {entry.id}: its model {entry.model!r} is not mapped in this process "
            "(import and register it first)"
        )
    return mapper


def _conflicts(entry: Row[Any], later: Sequence[Row[Any]]) -> RevertConflict | None:
    if not later:
        return None
    if entry.action_type == "update":
        changed = set(entry.changed_fields or ())
        hit = [
            r for r in later if r.action_type == "delete" or changed & set(r.changed_fields or ())
        ]
        names = sorted(changed & {f for r in hit for f in (r.changed_fields or ())})
        if any(r.action_type == "delete" for r in hit):
            names.append("(the object was deleted)")
    elif entry.action_type == "create":
        hit, names = list(later), sorted({f for r in later for f in (r.changed_fields or ())})
    else:  # a delete: the object was created again under the same key
        hit, names = list(later), ["(the object was created again)"]
    if not hit:
        return None
    return RevertConflict(
        f"entry {entry.id} ({entry.action_type} of {entry.model} {entry.object_id}) cannot be "
        f"reverted: later entries changed {', '.join(names) or 'the object'} "
        f"({', '.join(r.id for r in hit)}); revert those first, or pass force=True",
        names,
        [r.id for r in hit],
    )


def _get(session: Session, mapper: Mapper[Any], object_id: str, entry: Row[Any]) -> Any:
    obj = session.get(mapper.class_, identity_of_object_id(mapper, object_id))
    if obj is None:
        raise RevertError(f"entry {entry.id}: {entry.model} {object_id} no longer exists")
    return obj


def _related(session: Session, prop: RelationshipProperty[Any], ids: list[str]) -> list[Any]:
    target = prop.mapper
    return [session.get(target.class_, identity_of_object_id(target, i)) for i in ids]


def _apply(session: Session, entry: Row[Any], force: bool, later: Sequence[Row[Any]]) -> Any:
    mapper = _mapper(entry)
    key = later[-1].renamed_to if later and later[-1].renamed_to else None
    key = key or entry.renamed_to or entry.object_id
    if entry.action_type == "create":
        obj = session.get(mapper.class_, identity_of_object_id(mapper, key))
        if obj is not None:
            session.delete(obj)
        return None
    if entry.action_type == "delete":
        return _create_again(session, mapper, entry)
    obj = _get(session, mapper, key, entry)
    before = entry.before_state or {}
    masked = [f for f in entry.changed_fields or () if before.get(f) == MASKED]
    if masked and not force:
        raise RevertError(
            f"entry {entry.id}: masked attributes cannot be restored ({', '.join(masked)}); "
            "pass force=True to restore the others"
        )
    fields = [f for f in entry.changed_fields or () if f not in masked and f in before]
    values = decode_state(mapper.class_, {f: before[f] for f in fields}) or {}
    for name, value in values.items():
        prop = mapper.attrs.get(name)
        if isinstance(prop, RelationshipProperty):
            setattr(obj, name, _related(session, prop, value))
        else:
            setattr(obj, name, value)
    return obj


def _create_again(session: Session, mapper: Mapper[Any], entry: Row[Any]) -> Any:
    before = {k: v for k, v in (entry.before_state or {}).items() if v != MASKED}
    columns = {k for k in before if k in mapper.column_attrs}
    values = decode_state(mapper.class_, {k: before[k] for k in columns}) or {}
    for column in mapper.columns:
        prop = mapper.get_property_by_column(column)
        if prop.key in values or column.nullable or column.default is not None:
            continue
        if column.server_default is not None or (column.primary_key and column.autoincrement):
            continue
        raise RevertError(
            f"entry {entry.id}: {mapper.class_.__name__}.{prop.key} is required and was not "
            "recorded (masked or excluded), and has no default: the object cannot be created again"
        )
    obj = mapper.class_manager.new_instance()
    for name, value in values.items():
        setattr(obj, name, value)
    session.add(obj)
    return obj


def _ulid(value: Any, name: str) -> str:
    """An id as its canonical ULID text (any spelling the log reads: lowercase, hex, a
    ``ULID``); :class:`~auditlog.RevertError` naming ``name`` when it is not one."""
    try:
        return ulid_text(bytes.fromhex(ulid_hex(value)))
    except (ValueError, TypeError):
        raise RevertError(f"{name}: {value!r} is not an entry id (a ULID)") from None


def revert(session: Session, entry_id: str, *, force: bool = False) -> Any:
    """Undo one entry on ``session`` (flushed, not committed); returns the object it restores
    (None for a create, whose object is deleted). Raises :class:`~auditlog.RevertConflict` when
    a later entry changed what it would restore, unless ``force``."""
    entry_id = _ulid(entry_id, "entry_id")
    found = _entries(session, _t.c.id == entry_id)
    if not found:
        raise RevertError(f"no audit entry has the id {entry_id!r}")
    (entry,) = found
    if entry.action_type == "access":
        raise RevertError(f"entry {entry_id} records an access, which changed nothing")
    later = _later(session, entry, frozenset())
    conflict = _conflicts(entry, later)
    if conflict is not None and not force:
        raise conflict
    with audit_context(reverts=entry_id):
        obj = _apply(session, entry, force, later)
        session.flush()
    return obj


def revert_transaction(session: Session, transaction_id: str, *, force: bool = False) -> list[Any]:
    """Undo every entry of one database transaction ("what this request did"), newest first, on
    ``session`` (flushed, not committed); returns the objects restored, each once. Conflicts with entries
    written after the transaction are checked for all of them before anything changes."""
    transaction_id = _ulid(transaction_id, "transaction_id")
    entries = [
        e
        for e in _entries(session, _t.c.transaction_id == transaction_id)
        if e.action_type != "access"
    ]
    if not entries:
        raise RevertError(f"no change was recorded in the transaction {transaction_id!r}")
    own = frozenset(e.id for e in entries)
    later = {e.id: _later(session, e, own) for e in entries}
    conflicts = [c for e in entries if (c := _conflicts(e, later[e.id])) is not None]
    if conflicts and not force:
        raise RevertConflict(
            f"transaction {transaction_id} cannot be reverted: "
            + "; ".join(str(c) for c in conflicts),
            sorted({a for c in conflicts for a in c.attributes}),
            [i for c in conflicts for i in c.entries],
        )
    restored = []
    with audit_context(reverts_transaction=transaction_id):
        for entry in entries:
            restored.append(_apply(session, entry, force, later[entry.id]))
            session.flush()
    return list({id(obj): obj for obj in restored if obj is not None}.values())
