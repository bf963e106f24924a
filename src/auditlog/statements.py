"""ORM-enabled ``update()``, ``delete()`` and ``insert()`` statements, captured row by row.

``session.execute(update(Model)...)`` and friends bypass the unit of work, so the flush listeners
never see them. ``do_orm_execute`` wraps each such statement on a registered model:

- UPDATE / DELETE with criteria: the affected rows are read first, in the same transaction and
  locked (``SELECT ... FOR UPDATE`` where the database has it) so no concurrent writer slips
  between the read and the write; then the statement runs unchanged (``synchronize_session`` and
  all); then the new values are read back by primary key. If the statement reports more rows than
  were read, the statement fails rather than leave a change unaudited.
- bulk UPDATE by primary key (a list of parameter dictionaries): the same, by the given keys.
- INSERT, executemany and upserts (``ON CONFLICT``, ``ON DUPLICATE KEY``): the statement gets a
  ``RETURNING`` of the primary key so the new and changed rows are known; for upserts the rows that
  may conflict are read and locked first, so updates get their real before-state.

Statements on models that are not registered cost one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Result
from sqlalchemy.orm import ORMExecuteState

from .entries import Change, write_changes
from .exceptions import CaptureError
from .guard import audited_write
from .registry import Plan, plan_for
from .states import load_columns, read_rows

__all__ = ["INTERNAL", "do_orm_execute"]

#: Execution option set on the statements auditlog runs itself.
INTERNAL = "auditlog_internal"
_INTERNAL_OPTIONS = {INTERNAL: True, "autoflush": False}

Values = dict[str, Any]


def do_orm_execute(orm_execute_state: ORMExecuteState) -> Result[Any] | None:
    """Capture an ORM-enabled INSERT, UPDATE or DELETE on a registered model."""
    state = orm_execute_state
    if not (state.is_update or state.is_delete or state.is_insert):
        return None
    if state.execution_options.get(INTERNAL):
        return None
    mapper = state.bind_mapper
    plan = plan_for(mapper) if mapper is not None else None
    if plan is None:
        return None
    with audited_write():
        if state.is_insert:
            return _insert(state, plan)
        params = state.parameters
        if isinstance(params, Sequence) and not isinstance(params, Mapping) and params:
            return _update_by_primary_key(state, plan, params)
        return _with_criteria(state, plan)


def _run(state: ORMExecuteState, statement: Any = None) -> Result[Any]:
    if statement is None:
        return state.invoke_statement(execution_options={INTERNAL: True})
    return state.invoke_statement(statement=statement, execution_options={INTERNAL: True})


def _check_count(result: Result[Any], seen: int, what: str) -> None:
    rowcount = getattr(result, "rowcount", None)
    if isinstance(rowcount, int) and rowcount > seen >= 0:
        raise CaptureError(
            f"{what} changed {rowcount} rows but {seen} were read before it ran: rows matching "
            "it appeared concurrently; the statement is refused so that no change goes unaudited"
        )


def _attribute_key(plan: Plan, key: Any) -> str:
    """A key of ``.values()`` or of a parameter set (attribute, column, or their names) as the
    mapped attribute name, which is what states and primary keys are keyed by."""
    mapper = plan.mapper
    column = key if isinstance(key, sa.Column) else getattr(key, "expression", None)
    if isinstance(column, sa.Column):
        try:
            return str(mapper.get_property_by_column(column).key)
        except Exception:  # not a column of this mapper
            return str(column.key)
    name = str(getattr(key, "key", key))
    if name not in mapper.attrs and name in mapper.local_table.c:
        try:
            return str(mapper.get_property_by_column(mapper.local_table.c[name]).key)
        except Exception:
            return name
    return name


def _sets_primary_key(state: ORMExecuteState, plan: Plan) -> bool:
    values = getattr(state.statement, "_values", None) or {}
    names = {_attribute_key(plan, k) for k in values}
    params = state.parameters
    if isinstance(params, Mapping):
        names |= {_attribute_key(plan, k) for k in params}
    return bool(names & set(plan.pk_keys))


def _with_criteria(state: ORMExecuteState, plan: Plan) -> Result[Any]:
    statement: Any = state.statement
    action = "update" if state.is_update else "delete"
    if state.is_update and _sets_primary_key(state, plan):
        raise CaptureError(
            f"update({plan.mapper.class_.__name__}) sets primary key values, which auditlog cannot "
            "follow row by row; change keys through the ORM unit of work instead"
        )
    params = state.parameters if isinstance(state.parameters, Mapping) else None
    before = read_rows(state.session, plan, statement.whereclause, params, lock=True)
    result = _run(state)
    _check_count(result, len(before), f"{action}({plan.mapper.class_.__name__})")
    if state.is_delete:
        changes = [Change(plan, "delete", pk, values, None) for pk, values in before.items()]
    else:
        after = load_columns(state.session, plan, before, plan.keys)
        changes = [
            Change(plan, "update", pk, values, after[pk])
            for pk, values in before.items()
            if pk in after
        ]
    write_changes(state.session, changes)
    return result


def _pk_of(plan: Plan, params: Mapping[Any, Any]) -> tuple[Any, ...] | None:
    named = {_attribute_key(plan, k): v for k, v in params.items()}
    try:
        return tuple(named[key] for key in plan.pk_keys)
    except KeyError:
        return None


def _update_by_primary_key(
    state: ORMExecuteState, plan: Plan, params: Sequence[Mapping[str, Any]]
) -> Result[Any]:
    pks = [_pk_of(plan, p) for p in params]
    if any(pk is None for pk in pks):
        raise CaptureError(
            f"bulk update({plan.mapper.class_.__name__}): every parameter set needs the primary "
            f"key ({', '.join(plan.pk_keys)})"
        )
    known = [pk for pk in pks if pk is not None]
    before = load_columns(state.session, plan, known, plan.keys, for_update=True)
    result = _run(state)
    after = load_columns(state.session, plan, known, plan.keys)
    _check_count(result, len(before), f"bulk update({plan.mapper.class_.__name__})")
    if after.keys() - before.keys():
        raise CaptureError(
            f"bulk update({plan.mapper.class_.__name__}) changed rows that appeared after they "
            "were read (inserted concurrently under the same key); the statement is refused so "
            "that no change goes unaudited"
        )
    write_changes(
        state.session,
        [Change(plan, "update", pk, before[pk], after[pk]) for pk in before if pk in after],
    )
    return result


# --- INSERT and upserts -------------------------------------------------------------------------


def _value_rows(state: ORMExecuteState, plan: Plan) -> list[dict[str, Any]]:
    """The parameter sets of an INSERT, keyed by attribute name."""
    params = state.parameters
    raw: list[Mapping[Any, Any]]
    if isinstance(params, Mapping):
        raw = [params] if params else []
    elif params:
        raw = list(params)
    else:
        raw = []
    statement = state.statement
    for group in getattr(statement, "_multi_values", ()):
        raw.extend(dict(row) for row in group)
    values = getattr(statement, "_values", None)
    if values:
        raw.append(values)
    return [{_attribute_key(plan, k): v for k, v in row.items()} for row in raw]


def _conflict_keys(plan: Plan, statement: Any) -> list[tuple[str, ...]]:
    """Attribute key groups an upsert may conflict on: the primary key and the unique keys."""
    mapper = plan.mapper
    groups = [plan.pk_keys]
    clause = getattr(statement, "_post_values_clause", None)
    targets = getattr(clause, "inferred_target_elements", None) or ()
    if targets:
        groups = [tuple(_attribute_key(plan, t) for t in targets)]
    else:
        for constraint in getattr(mapper.local_table, "constraints", ()):
            if isinstance(constraint, sa.UniqueConstraint):
                cols = [mapper.get_property_by_column(c).key for c in constraint.columns]
                groups.append(tuple(cols))
        for index in getattr(mapper.local_table, "indexes", ()):
            if index.unique:
                cols = [mapper.get_property_by_column(c).key for c in index.columns]
                groups.append(tuple(cols))
    return [g for g in dict.fromkeys(groups) if g]


def _existing(state: ORMExecuteState, plan: Plan) -> dict[tuple[Any, ...], Values]:
    """Rows an upsert may update, read and locked before it runs."""
    rows = _value_rows(state, plan)
    found: dict[tuple[Any, ...], Values] = {}
    cls = plan.mapper.class_
    for keys in _conflict_keys(plan, state.statement):
        tuples = [tuple(row[k] for k in keys) for row in rows if all(k in row for k in keys)]
        if not tuples:
            continue
        columns = [getattr(cls, k) for k in keys]
        where: Any = (
            columns[0].in_([t[0] for t in tuples])
            if len(keys) == 1
            else sa.tuple_(*columns).in_(tuples)
        )
        found.update(read_rows(state.session, plan, where, lock=True))
    return found


def _insert(state: ORMExecuteState, plan: Plan) -> Result[Any]:
    statement: Any = state.statement
    upsert = getattr(statement, "_post_values_clause", None) is not None
    before = _existing(state, plan) if upsert else {}
    cls = plan.mapper.class_
    theirs = len(getattr(statement, "_returning", ()) or ())
    with_keys = statement.returning(*(getattr(cls, k) for k in plan.pk_keys))
    frozen = _run(state, with_keys).freeze()
    rows = frozen().all()
    pks = [tuple(row[theirs:]) for row in rows]
    after = load_columns(state.session, plan, pks, plan.keys)
    changes = []
    for pk in dict.fromkeys(pks):
        if pk not in after:
            continue
        if pk in before:
            changes.append(Change(plan, "update", pk, before[pk], after[pk]))
        else:
            changes.append(Change(plan, "create", pk, None, after[pk]))
    write_changes(state.session, changes)
    result = frozen()
    return result.columns(*range(theirs)) if theirs else result
