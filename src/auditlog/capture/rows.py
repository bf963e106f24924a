"""The values of audited rows: read from SQLAlchemy's instance state, or loaded from the table.

Values SQLAlchemy already holds are read from ``state.dict`` and ``state.committed_state`` (the
originals of changed attributes). What it does not hold (deferred or expired columns, the old value
of a JSON document changed in place) is loaded with one query per model and flush.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState

from ..registry import Family, Plan, pk_keys_of
from ..serialize import object_id_text
from .span import INTERNAL_OPTIONS

__all__ = [
    "LOAD_CHUNK",
    "FamilyRows",
    "Values",
    "as_key",
    "before_values",
    "identity_of",
    "keys_where",
    "load_columns",
    "load_family",
    "lock_rows",
    "missing_before",
    "read_family",
    "read_rows",
    "related_ids",
]

#: One row's values, keyed by mapped attribute name.
Values = dict[str, Any]
#: Rows of a family by primary key, each with the plan that records it (None: not audited).
FamilyRows = dict[tuple[Any, ...], tuple[Plan | None, Any]]

#: Primary keys per query when loading rows: far below every driver's parameter limit.
LOAD_CHUNK = 2000
#: Databases where ``FOR UPDATE`` locks the rows read (SQLite locks the whole file on write).
_LOCKING = frozenset({"postgresql", "mysql", "mariadb"})


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
    return sorted(object_id_text(identity_of(instance_state(obj))) for obj in items)


def before_values(state: InstanceState[Any]) -> Values:
    """The values before the coming flush: loaded values, with originals of changed attributes."""
    before = dict(state.dict)
    before.update(state.committed_state)
    return before


def missing_before(plan: Plan, state: InstanceState[Any], before: Values) -> set[str]:
    """Recorded columns whose value before the flush SQLAlchemy does not hold."""
    keys = plan.keys
    missing = set(keys.difference(before))
    current = state.dict
    for key, value in state.committed_state.items():  # the attributes changed since the load
        if key not in keys:
            continue
        if value is NO_VALUE:
            missing.add(key)
        elif value is current.get(key) and isinstance(value, (dict, list)):
            missing.add(key)  # a mutable JSON value changed in place: the old one is in the row
    return missing


def read_rows(
    session: Session,
    plan: Plan,
    where: Any,
    params: Any = None,
    *,
    keys: Iterable[str] | None = None,
    lock: bool = False,
) -> dict[tuple[Any, ...], Values]:
    """Stored values of ``keys`` (the recorded columns by default) of the rows matching
    ``where``, in one query, keyed by primary key; with ``lock``, ``SELECT ... FOR UPDATE``
    where the database has it, so that no other writer changes them before this transaction
    does."""
    cls = plan.mapper.class_
    pk_keys = plan.pk_keys
    wanted = sorted(set(plan.keys if keys is None else keys) | set(pk_keys))
    query = sa.select(*(getattr(cls, key) for key in wanted))
    if where is not None:
        query = query.where(where)
    if lock and _locking(session, plan.mapper):
        query = query.with_for_update()
    rows = session.execute(query, params, execution_options=INTERNAL_OPTIONS).mappings()
    return {tuple(row[k] for k in pk_keys): dict(row) for row in rows}


def _plain_type(column: Any, dialect: Dialect) -> Any:
    """The type of ``column`` on ``dialect`` (its variant there, if it has one), or None when
    the value bound is not the value stored: a TypeDecorator, an Enum."""
    kind = column.type.dialect_impl(dialect)
    return None if isinstance(kind, (sa.types.TypeDecorator, sa.Enum)) else kind


def _array_of(column: Any, dialect: Dialect) -> Any:
    """The array type keys of ``column`` are matched with in one parameter, or None (an IN
    then): on PostgreSQL, for integer, string and UUID keys. Integers go as ``bigint[]`` and
    strings as ``text[]``, which compare with every integer and string column (the column's own
    type would cut a longer string to its length, or refuse a value beyond ``integer``)."""
    kind = _plain_type(column, dialect) if dialect.name == "postgresql" else None
    if isinstance(kind, sa.Integer):
        return postgresql.ARRAY(sa.BigInteger())
    if isinstance(kind, sa.String):
        return postgresql.ARRAY(sa.Text())
    if isinstance(kind, sa.Uuid):
        return postgresql.ARRAY(kind)
    return None


def keys_where(
    mapper: Mapper[Any], pk_keys: Sequence[str], chunk: Sequence[tuple[Any, ...]], dialect: Dialect
) -> sa.ColumnElement[bool]:
    """The WHERE clause of the rows with these primary keys. A single integer or string key
    (and UUID on PostgreSQL) is matched with one parameter however many keys: ``= ANY(array)``
    on PostgreSQL, ``IN (SELECT value FROM json_each(...))`` on SQLite (see :func:`_json_keys`),
    where an IN of a thousand parameters costs several milliseconds to build and bind."""
    columns = [mapper.columns[key] for key in pk_keys]
    if len(columns) > 1:  # each part as its column's type: PostgreSQL compares no text to int
        parts = [[_key_part(c, v) for c, v in zip(columns, ident, strict=True)] for ident in chunk]
        return sa.tuple_(*columns).in_([tuple(part) for part in parts])
    (column,) = columns
    values = [ident[0] for ident in chunk]
    array = _array_of(column, dialect)
    if array is not None:
        return column == sa.any_(sa.literal(values, array))
    if _json_keys(column, values, dialect):
        each = sa.func.json_each(sa.literal(json.dumps(values), sa.Text())).table_valued("value")
        return column.in_(sa.select(each.c.value))
    return column.in_(values)


#: SQLite from this version has ``json_each`` whatever its build options (JSON1 is built in).
_SQLITE_JSON = (3, 38, 0)
_INT64 = range(-(2**63), 2**63)


def _json_keys(column: Any, values: list[Any], dialect: Dialect) -> bool:
    """Whether SQLite can take ``values`` as one JSON array and get each back unchanged: plain
    integers within 64 bits for an integer column, text without NUL (``json_each`` ends a
    string there) for a string column; no TypeDecorator and no Enum, whose stored form is
    not the value."""
    if dialect.name != "sqlite" or len(values) < 2:
        return False
    version = getattr(dialect.dbapi, "sqlite_version_info", (0,))
    if version < _SQLITE_JSON:
        return False
    kind = _plain_type(column, dialect)
    if isinstance(kind, sa.Integer):
        return all(type(v) is int and v in _INT64 for v in values)
    if isinstance(kind, sa.String):
        return all(type(v) is str and "\x00" not in v for v in values)
    return False


def lock_rows(
    session: Session, plan: Plan, identities: Iterable[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """Lock the rows with these primary keys (``SELECT ... FOR UPDATE`` where the database has
    it) and return the keys of those that exist: the primary key alone is read, with a Core
    statement on the session's connection (no ORM work for what is a plain lookup)."""
    idents = list(dict.fromkeys(identities))
    columns = [plan.mapper.columns[key] for key in plan.pk_keys]
    connection = session.connection(bind_arguments={"mapper": plan.mapper})
    locking = connection.dialect.name in _LOCKING
    found: set[tuple[Any, ...]] = set()
    for start in range(0, len(idents), LOAD_CHUNK):
        where = keys_where(
            plan.mapper, plan.pk_keys, idents[start : start + LOAD_CHUNK], connection.dialect
        )
        query = sa.select(*columns).where(where)
        if locking:
            query = query.with_for_update()
        found.update(map(tuple, connection.execute(query, execution_options=INTERNAL_OPTIONS)))
    return found


def as_key(plan: Plan, name: str, value: Any) -> Any:
    """``value`` as the key column's Python type, where it is one a plain conversion makes
    (``int("30")``, ``str(30)``, ``UUID(text)``), so that it names the row the database stores."""
    try:
        column = plan.mapper.columns[name]
    except KeyError:
        return value
    return _key_part(column, value)


def _key_part(column: Any, value: Any) -> Any:
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return value
    if isinstance(value, kind) or kind not in _KEY_TYPES:
        return value
    try:
        return kind(value)
    except (TypeError, ValueError):
        return value


_KEY_TYPES = frozenset({int, str, uuid.UUID})


def _stored_identity(plan: Plan, identity: tuple[Any, ...]) -> tuple[Any, ...]:
    """A primary key as the database returns it (an object may hold ``"30"`` for ``30``)."""
    return tuple(as_key(plan, k, v) for k, v in zip(plan.pk_keys, identity, strict=True))


def load_columns(
    session: Session,
    plan: Plan,
    identities: Iterable[tuple[Any, ...]],
    keys: Iterable[str],
    *,
    for_update: bool = False,
) -> dict[tuple[Any, ...], Values]:
    """:func:`read_rows` for the rows with these primary keys, a chunk of keys per query."""
    idents = list(dict.fromkeys(identities))
    keys = list(keys)
    found: dict[tuple[Any, ...], Values] = {}
    dialect = session.get_bind(mapper=plan.mapper).dialect
    for start in range(0, len(idents), LOAD_CHUNK):
        where = keys_where(plan.mapper, plan.pk_keys, idents[start : start + LOAD_CHUNK], dialect)
        found.update(read_rows(session, plan, where, keys=keys, lock=for_update))
    for ident in idents:  # a key held in another type than the row's: found as given too
        if ident not in found and (stored := _stored_identity(plan, ident)) in found:
            found[ident] = found[stored]
    return found


def _locking(session: Session, mapper: Any) -> bool:
    return session.get_bind(mapper=mapper).dialect.name in _LOCKING


def read_family(
    session: Session, family: Family, where: Any, params: Any = None, *, lock: bool = False
) -> FamilyRows:
    """The rows matching ``where``, each with the plan of ``family`` that records it (None for a
    subclass that is not audited), in one query keyed by primary key (``SELECT ... FOR UPDATE``
    with ``lock``, as :func:`read_rows`)."""
    query = sa.select(*family.selected)
    if where is not None:
        query = query.where(where)
    if lock and _locking(session, family.mapper):
        query = query.with_for_update()
    found: FamilyRows = {}
    for row in session.execute(query, params, execution_options=INTERNAL_OPTIONS):
        found[family.pk(row)] = (family.plan_of(row), row)
    return found


def load_family(
    session: Session,
    family: Family,
    identities: Iterable[tuple[Any, ...]],
    *,
    for_update: bool = False,
) -> FamilyRows:
    """:func:`read_family` for the rows with these primary keys, a chunk of keys per query."""
    idents = list(dict.fromkeys(identities))
    mapper, pk_keys = family.mapper, family.keys.pk_keys
    dialect = session.get_bind(mapper=mapper).dialect
    found: FamilyRows = {}
    for start in range(0, len(idents), LOAD_CHUNK):
        where = keys_where(mapper, pk_keys, idents[start : start + LOAD_CHUNK], dialect)
        found.update(read_family(session, family, where, lock=for_update))
    return found
