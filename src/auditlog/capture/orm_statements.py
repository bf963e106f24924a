"""The ORM hook of the bulk algorithm: ``update()``, ``delete()`` and ``insert()`` statements run
with ``session.execute``, which bypass the unit of work and so the flush listeners.

``do_orm_execute`` describes each such statement on a registered model for :mod:`.bulk` and runs
it in between, unchanged (``synchronize_session`` and all), after the autoflush SQLAlchemy would
run first (so the rows are read as the statement meets them), except that an INSERT also returns
the primary keys of its rows, for the entries, and hands the caller only what it asked for. If
the entries cannot be written, the transaction can no longer commit (:mod:`.refusal`).
Statements on models that are not registered cost one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy.engine import Connection, Result
from sqlalchemy.orm import ORMExecuteState

from ..exceptions import CaptureError
from ..registry import Family, family
from .bulk import (
    BulkStatement,
    given_keys,
    insert_statement,
    key_values_of,
    keys_not_returned,
    read_before,
    write_after,
)
from .refusal import refused_on_error
from .span import INTERNAL, audited_write

__all__ = ["do_orm_execute"]


def do_orm_execute(orm_execute_state: ORMExecuteState) -> Result[Any] | None:
    """Capture an ORM-enabled INSERT, UPDATE or DELETE on a registered model."""
    state = orm_execute_state
    if not (state.is_update or state.is_delete or state.is_insert):
        return None
    if state.execution_options.get(INTERNAL):
        return None
    mapper = state.bind_mapper
    rows = family(mapper) if mapper is not None else None
    if rows is None:
        return None
    if state.execution_options.get("autoflush", True):
        # what SQLAlchemy flushes before it runs the statement, flushed before the rows are
        # read: the statement meets the rows as the flush leaves them
        state.session._autoflush()
    with audited_write():
        if state.is_insert:
            return _insert(state, rows)
        stmt = _update_or_delete(state, rows)
        before = read_before(state.session, stmt)
        result = _run(state)
        with refused_on_error(_connection(state, rows)):
            write_after(state.session, stmt, before, rowcount=getattr(result, "rowcount", None))
        return result


def _connection(state: ORMExecuteState, rows: Family) -> Connection:
    """The connection the statement ran on."""
    return state.session.connection(bind_arguments={"mapper": rows.mapper})


def _run(state: ORMExecuteState, statement: Any = None) -> Result[Any]:
    if statement is None:
        return state.invoke_statement(execution_options={INTERNAL: True})
    return state.invoke_statement(statement=statement, execution_options={INTERNAL: True})


def _update_or_delete(state: ORMExecuteState, rows: Family) -> BulkStatement:
    plan = rows.keys
    action: Literal["update", "delete"] = "update" if state.is_update else "delete"
    params = state.parameters
    if isinstance(params, Sequence) and not isinstance(params, Mapping) and params:
        # bulk UPDATE by primary key: a list of parameter dictionaries
        keys = [plan.identity({plan.attribute_key(k): v for k, v in p.items()}) for p in params]
        if any(key is None for key in keys):
            raise CaptureError(
                f"bulk {action}({plan.label}): every parameter set needs the primary key "
                f"({', '.join(plan.pk_keys)})"
            )
        return BulkStatement(
            rows, action, f"bulk {action}({plan.label})", keys=[k for k in keys if k is not None]
        )
    statement: Any = state.statement
    label = f"{action}({plan.label})"
    single = params if isinstance(params, Mapping) else None
    return BulkStatement(
        rows,
        action,
        label,
        where=statement.whereclause,
        params=single,
        key_values=(
            key_values_of(rows, statement, [single or {}], label) if state.is_update else None
        )
        or (),
    )


def _insert(state: ORMExecuteState, rows: Family) -> Result[Any]:
    """An INSERT (executemany and upserts too), with ``RETURNING`` of the primary key added."""
    statement: Any = state.statement
    params = state.parameters
    sets = [params] if isinstance(params, Mapping) else list(params or ())
    plan = rows.keys
    stmt = insert_statement(rows, statement, sets, label=f"insert({plan.label})")
    connection = _connection(state, rows)
    dialect = connection.dialect
    if not (dialect.insert_executemany_returning if len(sets) > 1 else dialect.insert_returning):
        # the database cannot return the keys: the values must give them
        stmt.keys = given_keys(stmt)
        if stmt.keys is None:
            raise keys_not_returned(stmt.label, plan, dialect)
        before = read_before(state.session, stmt)
        result = _run(state)
        with refused_on_error(connection):
            write_after(state.session, stmt, before)
        return result
    before = read_before(state.session, stmt)
    cls = plan.mapper.class_
    theirs = len(getattr(statement, "_returning", ()) or ())
    with_keys = statement.returning(*(getattr(cls, k) for k in plan.pk_keys))
    frozen = _run(state, with_keys).freeze()
    inserted = [tuple(row[theirs:]) for row in frozen().all()]
    with refused_on_error(_connection(state, rows)):
        write_after(state.session, stmt, before, inserted=inserted)
    result = frozen()
    return result.columns(*range(theirs)) if theirs else result
