"""Which of a flush's deleted rows the flush really removed: only those get a delete entry.

Another transaction may delete a row after a session loaded it and before the session's flush;
the flush's ``DELETE`` then matches nothing (SQLAlchemy warns) and the row must not get a second
delete entry. A database trigger may also skip a row (``RETURN NULL``, ``RAISE(IGNORE)``): it is
still there after the flush, and gets no entry either. Which rows those are is known from the
``DELETE`` row counts, read by an ``after_execute`` listener on the engine:

- a table the flush deletes one row of: its count says it all. No statement is added (a request
  that deletes one object pays nothing more for this);
- a table it deletes several rows of: a count cannot say which row was missing, so the rows are
  locked by primary key before the flush (``SELECT ... FOR UPDATE`` where the database has it),
  and those not found get no entry; when the count falls short of the rows the flush was to
  delete from the table (its objects of every class, audited or not), the rows still there
  after the flush are looked up, and get no entry. Not for joined-inheritance models, whose
  objects span several tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql.dml import Delete

from ..registry import Plan
from .engines import EngineListeners
from .rows import identity_of, lock_rows

__all__ = ["ENGINE_EVENTS", "DeleteCheck", "check_deletes"]

_COUNTS = "auditlog.delete_counts"


@dataclass(slots=True)
class DeleteCheck:
    """What :func:`check_deletes` found before the flush, completed after it by :meth:`gone`."""

    locked_gone: set[InstanceState[Any]] = field(default_factory=set)
    #: one row's table: (connection, table, the object whose row it is)
    counted: list[tuple[Connection, Any, InstanceState[Any]]] = field(default_factory=list)
    #: a table of several rows: (connection, table, plan, the objects whose rows were found)
    locked: list[tuple[Connection, Any, Plan, list[InstanceState[Any]]]] = field(
        default_factory=list
    )

    def gone(
        self, session: Session, deleting: Iterable[InstanceState[Any]]
    ) -> set[InstanceState[Any]]:
        """The objects whose rows this flush did not delete (already gone, or kept by a
        trigger): no entry for them. Called after the flush, with every object it deleted
        (registered or not: all of them count in a table's DELETE row counts)."""
        gone = set(self.locked_gone)
        for connection, table, state in self.counted:
            seen = _seen(connection, table)
            if seen and not any(seen):  # its DELETE ran and matched nothing (-1: unknown)
                gone.add(state)
        if self.locked:
            rows: dict[Any, int] = {}  # the rows each table's DELETEs were to remove
            for state in deleting:
                if state not in gone:
                    for table in state.mapper.tables:
                        rows[table] = rows.get(table, 0) + 1
            for connection, table, plan, states in self.locked:
                seen = _seen(connection, table)
                if seen and min(seen) >= 0 and sum(seen) < rows.get(table, 0):  # some kept
                    kept = lock_rows(session, plan, _identities(states))
                    gone.update(state for state in states if identity_of(state) in kept)
        for connection in {c for c, *_ in self.counted} | {c for c, *_ in self.locked}:
            connection.info.pop(_COUNTS, None)
        return gone


def _seen(connection: Connection, table: Any) -> list[int] | None:
    """The row counts of the flush's DELETEs of ``table`` on ``connection``."""
    counts: dict[Any, list[int]] = connection.info.get(_COUNTS) or {}
    return counts.get(table)


def check_deletes(session: Session, doomed: dict[Plan, list[InstanceState[Any]]]) -> DeleteCheck:
    """Before the flush: lock the rows of tables the flush deletes several rows of, and watch
    the ``DELETE`` row counts of the tables it deletes one row of."""
    check = DeleteCheck()
    watched: set[Connection] = set()
    by_table: dict[Any, list[tuple[Plan, InstanceState[Any]]]] = {}
    for plan, states in doomed.items():
        tables = plan.mapper.tables
        key = tables[0] if len(tables) == 1 else plan  # joined inheritance: locked, per plan
        by_table.setdefault(key, []).extend((plan, state) for state in states)

    def watch(plan: Plan, table: Any) -> Connection:
        connection = session.connection(bind_arguments={"mapper": plan.mapper})
        ENGINE_EVENTS.attach(connection.engine)
        if connection not in watched:  # a fresh watch, whatever an earlier flush left
            watched.add(connection)
            connection.info[_COUNTS] = {}
        connection.info[_COUNTS][table] = []
        return connection

    for key, members in by_table.items():
        if len(members) == 1 and not isinstance(key, Plan):
            plan, state = members[0]
            check.counted.append((watch(plan, key), key, state))
            continue
        by_plan: dict[Plan, list[InstanceState[Any]]] = {}
        for plan, state in members:
            by_plan.setdefault(plan, []).append(state)
        for plan, states in by_plan.items():
            found = lock_rows(session, plan, _identities(states))
            check.locked_gone.update(s for s in states if identity_of(s) not in found)
            if not isinstance(key, Plan):  # one table: its DELETEs' counts tell
                there = [s for s in states if identity_of(s) in found]
                check.locked.append((watch(plan, key), key, plan, there))
    return check


def _identities(states: Iterable[InstanceState[Any]]) -> Iterable[tuple[Any, ...]]:
    return (identity_of(state) for state in states)


def _after_execute(
    conn: Connection, elem: Any, multiparams: Any, params: Any, options: Any, result: Any
) -> None:
    counts: dict[Any, list[int]] | None = conn.info.get(_COUNTS)
    if counts is not None and isinstance(elem, Delete):
        seen = counts.get(elem.table)
        if seen is not None:
            seen.append(result.rowcount)  # -1 when the driver does not know


#: The engine event of the row counts, attached to an engine when a flush first needs it.
ENGINE_EVENTS = EngineListeners(("after_execute", _after_execute, {}))
