"""Reading the values an entry records from SQLAlchemy's instance state, and loading the rest.

Values SQLAlchemy already holds are read from ``state.dict`` and ``state.committed_state`` (the
originals of changed attributes). What it does not hold (deferred or expired columns, the old value
of a JSON document changed in place) is loaded with one query per model and flush.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

from .registry import Plan, pk_keys_of
from .serialize import encode_value

__all__ = [
    "before_values",
    "identity_of",
    "load_columns",
    "missing_before",
    "object_id",
    "related_ids",
]

Values = dict[str, Any]

#: Primary keys per query when loading rows: far below every driver's parameter limit.
LOAD_CHUNK = 2000
_INTERNAL = {"autoflush": False, "auditlog_internal": True}


def object_id(pk: tuple[Any, ...]) -> str:
    """A primary key as text; a composite key as a compact JSON array of the encoded parts."""
    if len(pk) == 1:
        value = encode_value(pk[0])
        return value if isinstance(value, str) else json.dumps(value)
    return json.dumps([encode_value(v) for v in pk], separators=(",", ":"))


def identity_of(state: InstanceState[Any]) -> tuple[Any, ...]:
    """The primary key values of an object, persistent or just inserted."""
    if state.key is not None:
        return tuple(state.key[1])
    values = state.dict
    return tuple(values.get(key) for key in pk_keys_of(state.mapper))


def related_ids(collection: Any) -> list[str]:
    """A collection of related objects as the sorted list of their object ids."""
    if collection is None or collection is NO_VALUE:
        return []
    items = collection.values() if isinstance(collection, dict) else collection
    return sorted(object_id(identity_of(instance_state(obj))) for obj in items)


def before_values(state: InstanceState[Any]) -> Values:
    """The values before the coming flush: loaded values, with originals of changed attributes."""
    before = dict(state.dict)
    before.update(state.committed_state)
    return before


def missing_before(plan: Plan, state: InstanceState[Any], before: Values) -> set[str]:
    """Recorded columns whose value before the flush SQLAlchemy does not hold."""
    current = state.dict
    committed = state.committed_state
    missing = set()
    for key in plan.keys:
        value = before.get(key, NO_VALUE)
        if value is NO_VALUE:
            missing.add(key)
        elif key in committed and value is current.get(key) and isinstance(value, (dict, list)):
            missing.add(key)  # a mutable JSON value changed in place: the old one is in the row
    return missing


def load_columns(
    session: Session,
    plan: Plan,
    identities: Iterable[tuple[Any, ...]],
    keys: Iterable[str],
    *,
    for_update: bool = False,
) -> dict[tuple[Any, ...], Values]:
    """The stored values of ``keys`` for the rows with these primary keys, in one query."""
    idents = list(dict.fromkeys(identities))
    cls = plan.mapper.class_
    pk_keys = plan.pk_keys
    wanted = sorted(set(keys) | set(pk_keys))
    found: dict[tuple[Any, ...], Values] = {}
    for start in range(0, len(idents), LOAD_CHUNK):
        chunk = idents[start : start + LOAD_CHUNK]
        query = sa.select(*(getattr(cls, key) for key in wanted))
        if len(pk_keys) == 1:
            query = query.where(getattr(cls, pk_keys[0]).in_([ident[0] for ident in chunk]))
        else:
            query = query.where(sa.tuple_(*(getattr(cls, k) for k in pk_keys)).in_(chunk))
        if for_update:
            query = query.with_for_update()
        rows = session.execute(query, execution_options=_INTERNAL)
        found.update({tuple(row[k] for k in pk_keys): dict(row) for row in rows.mappings()})
    return found
