"""The one algorithm for statements that write many rows at once, row by row in the log.

``session.execute(update(Model)...)``, Core statements on an enabled session's connection and the
legacy ``bulk_*`` methods bypass the unit of work. Two thin hooks describe each such statement as a
:class:`BulkStatement` (:mod:`.orm_statements` for ORM-enabled statements, :mod:`.core_statements`
for Core ones); everything else happens here, the same way for both:

1. :func:`read_before`: the rows the statement can change are read first, in the same transaction
   and locked (``SELECT ... FOR UPDATE`` where the database has it) so no concurrent writer slips
   between the read and the write: by primary key when the parameters give every key, else by
   the statement's criteria; for an upsert, every row its values may conflict with.
2. the hook runs the statement;
3. :func:`write_after`: the statement may not have changed more rows than were read (else it
   fails rather than leave a change unaudited); the new values are read back by primary key; each
   row becomes a create, an update or a delete entry. A DELETE that removed fewer rows than were
   read (a ``LIMIT``, a trigger that skips rows) is recorded for the rows that are gone only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from ..exceptions import CaptureError
from ..registry import Family, Plan
from .entries import Change, write_changes
from .rows import FamilyRows, as_key, load_family, read_family

__all__ = [
    "BulkStatement",
    "given_keys",
    "insert_statement",
    "key_values_of",
    "keys_not_returned",
    "read_before",
    "write_after",
]


@dataclass
class BulkStatement:
    """What a hook knows of one INSERT, UPDATE or DELETE of an audited model's table.

    Each row is recorded by the plan of its own class (:class:`~auditlog.registry.Family`), so
    that a statement on a polymorphic base keeps every subclass's masks and content type.
    """

    family: Family
    action: Literal["insert", "update", "delete"]
    #: how messages name the statement: ``update(Loan)``
    label: str
    #: the primary keys of the rows, when its parameters give every one of them
    keys: list[tuple[Any, ...]] | None = None
    #: UPDATE and DELETE without ``keys``: the WHERE clause and its bound values, or the
    #: parameter sets of an executemany (each one selects rows of its own)
    where: Any = None
    params: Any = None
    param_sets: Sequence[Mapping[str, Any]] = ()
    #: INSERT: its parameter sets, keyed by attribute name, and whether it is an upsert
    #: (``ON CONFLICT``, ``ON DUPLICATE KEY``) with the columns its conflict clause names
    values: Sequence[Mapping[str, Any]] = ()
    upsert: bool = False
    conflict_target: tuple[str, ...] = ()
    #: INSERT: a ``RETURNING`` of the primary key was added, its rows are the inserted keys
    returned: bool = False
    #: UPDATE that sets primary key values: the values it sets, per parameter set (one for a
    #: single execution); :func:`read_before` fills ``renames`` (old key -> new key) with them
    key_values: Sequence[Mapping[str, Any]] = ()
    renames: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)


def insert_statement(
    family: Family,
    statement: Any,
    parameter_sets: Sequence[Mapping[Any, Any]],
    *,
    label: str,
    keys: list[tuple[Any, ...]] | None = None,
) -> BulkStatement:
    """The :class:`BulkStatement` of an INSERT: its value rows from the parameter sets, a
    multi-row ``.values([...])`` and ``.values(...)``; for an upsert, its conflict target."""
    raw = [params for params in parameter_sets if params]
    given = getattr(statement, "_values", None)
    if given:
        # each row is ``.values()`` (bound parameters: ``bindparam("key")`` takes its value from
        # the row's parameters) with the row's parameters over it, as SQLAlchemy runs it
        raw = [{**{k: _bound(v, p) for k, v in given.items()}, **p} for p in raw or [{}]]
    for group in getattr(statement, "_multi_values", ()):
        raw.extend(dict(row) for row in group)
    clause = getattr(statement, "_post_values_clause", None)
    targets = getattr(clause, "inferred_target_elements", None) or ()
    attribute_key = family.keys.attribute_key
    return BulkStatement(
        family,
        "insert",
        label,
        keys=keys,
        values=[{attribute_key(k): v for k, v in row.items()} for row in raw],
        upsert=clause is not None,
        conflict_target=tuple(attribute_key(t) for t in targets),
    )


def _bound(value: Any, params: Mapping[Any, Any]) -> Any:
    """A value of an INSERT's ``.values()``: a bound parameter's own value or the one the
    parameters give it; any other SQL expression as it is."""
    if isinstance(value, BindParameter):
        return params.get(value.key, value.effective_value)
    return value


def key_values_of(
    rows: Family, elem: Any, sets: Sequence[Mapping[Any, Any]], label: str
) -> list[dict[str, Any]] | None:
    """The primary key values an UPDATE sets, per parameter set, as the key column's Python type
    (``"30"`` for an integer key is 30): its ``.values()``, a ``bindparam()`` there taking its
    value from the parameters, and the parameters named after a column or attribute, as
    SQLAlchemy builds its SET clause. None when it sets none. A key set to an expression, or to
    a parameter given no value, cannot be followed and is refused."""
    plan = rows.keys
    given: dict[str, BindParameter[Any]] = {}
    for key, value in (getattr(elem, "_values", None) or {}).items():
        name = plan.attribute_key(key)
        if name not in plan.pk_set:
            continue
        if not isinstance(value, BindParameter):
            raise CaptureError(
                f"{label} sets the primary key ({name}) to an expression, so the rows it "
                "changes cannot be found again for their entries: give the new key as a value"
            )
        given[name] = value
    found = []
    for params in sets:
        values: dict[str, Any] = {}
        for name, bind in given.items():
            value = params.get(bind.key, bind.effective_value)
            if value is None:
                raise CaptureError(
                    f"{label} sets the primary key ({name}) to the parameter {bind.key!r}, "
                    "which has no value here"
                )
            values[name] = value
        for key, value in params.items():
            name = plan.attribute_key(key)
            if name in plan.pk_set:
                values[name] = value
        found.append({name: as_key(plan, name, value) for name, value in values.items()})
    return found if any(found) else None


def given_keys(stmt: BulkStatement) -> list[tuple[Any, ...]] | None:
    """The primary key of every row an INSERT's values give, or None when any row leaves a
    part of its key to the database (no value, a parameter bound at execution, or a SQL
    expression such as a sequence's)."""
    identity = stmt.family.keys.identity
    keys = [identity(dict(values)) for values in stmt.values]
    found = [key for key in keys if key is not None and not _expression_in(key)]
    return found if stmt.values and len(found) == len(keys) else None


def _expression_in(key: tuple[Any, ...]) -> bool:
    return any(part is None or isinstance(part, sa.ClauseElement) for part in key)


def keys_not_returned(label: str, plan: Plan, dialect: Dialect) -> CaptureError:
    """The refusal of an INSERT whose rows' keys the database makes and cannot return."""
    return CaptureError(
        f"{label} leaves the primary key ({', '.join(plan.pk_keys)}) to the database, and "
        f"{dialect.name} cannot return the keys of the rows it inserts (no INSERT ... RETURNING "
        "for this statement), so its rows cannot be recorded: give the keys in its values, "
        "insert one row per statement, or add the objects to the session"
    )


def read_before(session: Session, stmt: BulkStatement) -> FamilyRows:
    """The stored values of every row ``stmt`` may change, read and locked before it runs."""
    if stmt.action == "insert":
        return _conflicting(session, stmt) if stmt.upsert else {}
    if stmt.keys is not None:
        return load_family(session, stmt.family, stmt.keys, for_update=True)
    if stmt.param_sets:
        found: FamilyRows = {}
        for i, params in enumerate(stmt.param_sets):
            rows = read_family(session, stmt.family, stmt.where, params, lock=True)
            if stmt.key_values:
                _rename(stmt, rows, stmt.key_values[i])
            found.update(rows)
        return found
    rows = read_family(session, stmt.family, stmt.where, stmt.params, lock=True)
    if stmt.key_values:
        _rename(stmt, rows, stmt.key_values[0])
    return rows


def _rename(stmt: BulkStatement, rows: FamilyRows, values: Mapping[str, Any]) -> None:
    """The key each of ``rows`` will have once the UPDATE has set ``values`` on it."""
    pk_keys = stmt.family.keys.pk_keys
    for pk in rows:
        stmt.renames[pk] = tuple(values.get(key, old) for key, old in zip(pk_keys, pk, strict=True))


def write_after(
    session: Session,
    stmt: BulkStatement,
    before: FamilyRows,
    *,
    rowcount: Any = None,
    inserted: Iterable[tuple[Any, ...]] = (),
) -> int:
    """Write the entries of ``stmt``, which has run: ``rowcount`` as the database reported it,
    ``inserted`` the keys an INSERT returned. Returns how many entries were written."""
    family = stmt.family
    if stmt.action != "insert" and isinstance(rowcount, int) and rowcount > len(before) >= 0:
        raise CaptureError(
            f"{stmt.label} changed {rowcount} rows but {len(before)} were read before it ran: "
            "rows matching it appeared concurrently; the statement is refused so that no change "
            "goes unaudited"
        )
    if stmt.action == "delete":
        gone = before
        if isinstance(rowcount, int) and 0 <= rowcount < len(before):
            # fewer rows deleted than read (a LIMIT, a trigger that skips rows): the rows read
            # are locked, so those still there are the ones it left
            kept = load_family(session, family, list(before))
            gone = {pk: found for pk, found in before.items() if pk not in kept}
        changes = [
            Change(plan, "delete", pk, family.values(plan, row), None)
            for pk, (plan, row) in gone.items()
            if plan is not None
        ]
        return write_changes(session, changes)
    renames = stmt.renames
    keys = stmt.keys if stmt.keys is not None else [renames.get(pk, pk) for pk in before]
    if stmt.action == "insert" and stmt.keys is None:
        keys = list(inserted)
    # the rows an upsert read may have been updated whichever keys its values give
    conflicting = list(before) if stmt.action == "insert" else []
    # a row the UPDATE left keeps its key
    after = load_family(session, family, [*keys, *renames, *conflicting])
    read = {renames.get(pk, pk) for pk in before} | set(renames)  # the rows read, at either key
    if stmt.action == "update" and after.keys() - read:
        raise CaptureError(
            f"{stmt.label} changed rows that appeared after they were read (inserted "
            "concurrently under the same key); the statement is refused so that no change goes "
            "unaudited"
        )
    changes = []
    if stmt.action == "update":
        # every row read, by its key as the database holds it (parameters may give "30" for
        # 30), in the statement's order where its keys name them
        for pk in _in_order(stmt.keys, before):
            now = renames.get(pk, pk)
            if now not in after and pk in after:
                now = pk  # not changed by the UPDATE (a trigger kept it)
            if now not in after:
                if now != pk:
                    raise CaptureError(
                        f"{stmt.label} gave the row {pk} the key {now}, but no row has that key "
                        "once it ran (the database stored another value): the statement is "
                        "refused so that no change goes unaudited"
                    )
                continue
            plan, old = before[pk]  # the class the row had: its plan records both sides
            if plan is None:
                continue
            change = Change(
                plan, "update", pk, family.values(plan, old), family.values(plan, after[now][1])
            )
            if now != pk:
                change.renamed_to = now
            changes.append(change)
        return write_changes(session, changes)
    moved = _moved_by_upsert(stmt, before, after) if stmt.upsert else {}
    for old, now in moved.items():
        plan, row = before[old]
        if plan is not None:
            change = Change(
                plan, "update", old, family.values(plan, row), family.values(plan, after[now][1])
            )
            change.renamed_to = now
            changes.append(change)
    for pk in _in_order(keys, after):
        plan, row = after[pk]
        if pk in moved.values():
            continue
        if pk in before:  # an upsert's update: filed under the key the row keeps
            plan, old = before[pk]
            if plan is None:
                continue
            changes.append(
                Change(plan, "update", pk, family.values(plan, old), family.values(plan, row))
            )
        elif plan is not None:
            changes.append(Change(plan, "create", pk, None, family.values(plan, row)))
    return write_changes(session, changes)


def _moved_by_upsert(
    stmt: BulkStatement, before: FamilyRows, after: FamilyRows
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The rows an upsert gave another key (its update sets the key): each conflicting row read
    before it ran that no longer has its key, with the key of the row that now holds its
    conflict values. A row that cannot be found so is refused: its change would go unaudited."""
    gone = [pk for pk in before if pk not in after]
    if not gone:
        return {}
    columns = stmt.family.mapper.columns
    fresh = [pk for pk in after if pk not in before]
    moved: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for old in gone:
        was = before[old][1]._mapping
        for group in _conflict_keys(stmt):
            cells = [columns[key] for key in group]
            found = [
                pk
                for pk in fresh
                if pk not in moved.values()
                and all(after[pk][1]._mapping[c] == was[c] for c in cells)
            ]
            if len(found) == 1:
                moved[old] = found[0]
                break
        else:
            raise CaptureError(
                f"{stmt.label} changed the key of the row {old} it conflicted with, and no row "
                "holds its conflict values once it ran: the statement is refused so that no "
                "change goes unaudited"
            )
    return moved


def _in_order(
    keys: Iterable[tuple[Any, ...]] | None, rows: FamilyRows
) -> Iterable[tuple[Any, ...]]:
    """Every key of ``rows`` (as the database holds them), those ``keys`` name first, in that
    order: a statement's parameters may give a key in another Python type ("30" for 30)."""
    return dict.fromkeys([*(key for key in keys or () if key in rows), *rows])


def _conflict_keys(stmt: BulkStatement) -> list[tuple[str, ...]]:
    """Attribute key groups an upsert may conflict on: its conflict target if it names one,
    else the primary key and every unique key."""
    if stmt.conflict_target:
        return [stmt.conflict_target]
    keys = stmt.family.keys
    groups = [keys.pk_keys]
    table = keys.mapper.local_table
    for constraint in getattr(table, "constraints", ()):
        if isinstance(constraint, sa.UniqueConstraint):
            groups.append(tuple(keys.attribute_key(c) for c in constraint.columns))
    for index in getattr(table, "indexes", ()):
        if index.unique:
            groups.append(tuple(keys.attribute_key(c) for c in index.columns))
    return [g for g in dict.fromkeys(groups) if g]


def _conflicting(session: Session, stmt: BulkStatement) -> FamilyRows:
    """Rows an upsert may update, read and locked before it runs."""
    cls = stmt.family.mapper.class_
    found: FamilyRows = {}
    for keys in _conflict_keys(stmt):
        tuples = [tuple(row[k] for k in keys) for row in stmt.values if all(k in row for k in keys)]
        if not tuples:
            continue
        columns = [getattr(cls, k) for k in keys]
        where: Any = (
            columns[0].in_([t[0] for t in tuples])
            if len(keys) == 1
            else sa.tuple_(*columns).in_(tuples)
        )
        found.update(read_family(session, stmt.family, where, lock=True))
    return found
