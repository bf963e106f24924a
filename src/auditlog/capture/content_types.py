"""Stable integer ids for audited models, created race-free on first use and cached after commit.

An id is looked up (and if missing, inserted with the dialect's "insert or ignore") on the flush's
own connection, inside the application's transaction. Until that database transaction really
commits, the id is kept in ``connection.info`` only; the engine's ``commit`` event
(:func:`on_commit`, attached by :mod:`auditlog.capture.listeners` with the other engine listeners)
moves it to the per-engine cache, and a rollback (of the transaction or of any savepoint) drops it.
Releasing a savepoint, or a session ``commit()`` inside an outer transaction it joined, is not a
database commit and promotes nothing, so a rolled-back transaction never leaves a cached id without
a row. The ``commit`` event comes before the COMMIT itself: a COMMIT that then fails (a deferred
constraint, a serialization failure, a lost connection) reaches ``handle_error``, which takes the
ids it promoted back out of the cache. On an engine whose events are not watched, ids are simply
looked up once per transaction.
"""

from __future__ import annotations

import weakref
from typing import Any
from weakref import WeakKeyDictionary

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.orm import Session

from ..models import content_type_table
from ..registry import Plan
from .engines import EngineListeners

__all__ = ["ENGINE_EVENTS", "clear_cache", "content_type_id", "known_id", "unwatch", "watch"]

_table = content_type_table
_committed: WeakKeyDictionary[Engine, dict[str, int]] = WeakKeyDictionary()
_PENDING = "auditlog.pending_content_types"
#: the ids the connection's last ``commit`` event promoted, with the transaction it was for,
#: until that COMMIT is known to be done
_PROMOTED = "auditlog.promoted_content_types"


def _insert_ignoring_duplicates(connection: Connection, plan: Plan) -> None:
    values = {"name": plan.content_type_name, "table_name": plan.table_name}
    dialect = connection.dialect.name
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(_table).values(values).on_conflict_do_nothing(index_elements=["name"])
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(_table).values(values).on_conflict_do_nothing(index_elements=["name"])
    elif dialect in {"mysql", "mariadb"}:
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(_table).values(values)
        stmt = stmt.on_duplicate_key_update(name=stmt.inserted.name)
    else:  # other databases: a savepoint absorbs the duplicate
        try:
            with connection.begin_nested():
                connection.execute(_table.insert().values(values))
        except sa.exc.IntegrityError:
            pass
        return
    connection.execute(stmt)


def _select_id(connection: Connection, name: str, *, locking: bool) -> int | None:
    query = sa.select(_table.c.id).where(_table.c.name == name)
    if locking and connection.dialect.name in {"mysql", "mariadb"}:
        # A locking read sees the newest committed row, not the REPEATABLE READ snapshot.
        query = query.with_for_update(read=True)
    return connection.execute(query).scalar_one_or_none()


def _pending(connection: Connection) -> dict[str, int]:
    """Ids resolved in ``connection``'s current transaction (a fresh dict for a new one).

    The dict lives in ``connection.info``, which belongs to the pooled DBAPI connection and so
    outlives the transaction: it is tagged with the transaction it was made in, and a tag that is
    not the current transaction means leftovers, which are dropped.
    """
    transaction = connection.get_transaction()
    held = connection.info.get(_PENDING)
    if held is not None and transaction is not None and held[0]() is transaction:
        return held[1]  # type: ignore[no-any-return]
    # A new transaction on this connection: the COMMIT before it went through (a failed one
    # would have reached handle_error), so what it promoted stays.
    connection.info.pop(_PROMOTED, None)
    fresh: dict[str, int] = {}
    if transaction is not None:
        connection.info[_PENDING] = (weakref.ref(transaction), fresh)
    else:
        connection.info.pop(_PENDING, None)
    return fresh


def known_id(connection: Connection, plan: Plan) -> int | None:
    """``plan``'s id where this process already holds it for ``connection``, without a query."""
    name = plan.content_type_name
    committed = _committed.get(connection.engine)
    if committed is not None and name in committed:
        return committed[name]
    return _pending(connection).get(name)


def content_type_id(session: Session, connection: Connection, plan: Plan) -> int:
    """The id of ``plan``'s model in the database behind ``connection``, created if needed."""
    engine = connection.engine
    name = plan.content_type_name
    committed = _committed.get(engine)
    if committed is not None and name in committed:
        return committed[name]
    watch(engine)  # before anything is pending, so that its commit or rollback is seen
    pending = _pending(connection)
    found = pending.get(name)
    if found is not None:
        return found
    found = _select_id(connection, name, locking=False)
    if found is None:
        _insert_ignoring_duplicates(connection, plan)
        found = _select_id(connection, name, locking=True)
        if found is None:  # pragma: no cover - the insert above guarantees a row
            raise RuntimeError(f"content type {name!r} could not be created")
    pending[name] = found
    return found


def _on_commit(connection: Connection) -> None:
    """The database transaction is about to commit: its ids are now safe to share across
    connections (taken back by :func:`_on_error` if the COMMIT fails)."""
    held = connection.info.pop(_PENDING, None)
    transaction = connection.get_transaction()
    if held is not None and held[0]() is transaction and held[1]:
        _committed.setdefault(connection.engine, {}).update(held[1])
        connection.info[_PROMOTED] = (connection.engine, held[1], weakref.ref(transaction))


def _demote(connection: Connection) -> None:
    """The COMMIT that promoted ids did not happen: forget them (their rows are gone)."""
    held = connection.info.pop(_PROMOTED, None)
    if held is None:
        return
    engine, ids, _ = held
    cache = _committed.get(engine)
    if cache is not None:
        for name, found in ids.items():
            if cache.get(name) == found:
                del cache[name]


def _on_error(context: ExceptionContext) -> None:
    """A failure outside any statement (a COMMIT among them): what the last ``commit`` event
    promoted on this connection may not be committed."""
    if context.statement is None and context.connection is not None:
        _demote(context.connection)


def _on_rollback(connection: Connection) -> None:
    """Rows inserted in the transaction are gone: resolve again next time. A rollback of the
    transaction whose commit event promoted ids means that COMMIT did not happen; a rollback of
    a later transaction (a read after the commit, closed without a write) means it did."""
    connection.info.pop(_PENDING, None)
    held = connection.info.get(_PROMOTED)
    if held is None:
        return
    transaction = connection.get_transaction()
    if transaction is not None and held[2]() is not transaction:
        connection.info.pop(_PROMOTED, None)  # a later transaction: the COMMIT went through
    else:
        _demote(connection)


def _on_rollback_savepoint(connection: Connection, name: Any, context: Any) -> None:
    connection.info.pop(_PENDING, None)  # the row may have been inserted inside the savepoint


def clear_cache(*_args: Any, **_kw: Any) -> None:
    """Forget every cached id (the table was dropped or rebuilt: also a table event listener)."""
    _committed.clear()


ENGINE_EVENTS = EngineListeners(
    ("commit", _on_commit, {}),
    ("rollback", _on_rollback, {}),
    ("rollback_savepoint", _on_rollback_savepoint, {}),
    ("handle_error", _on_error, {}),
)
_TABLE_EVENTS = ("after_create", "after_drop")


def watch(engine: Engine) -> None:
    """Settle ``engine``'s pending ids on its real COMMIT and ROLLBACK; forget every cached id
    when the table is created or dropped again."""
    if ENGINE_EVENTS.attached(engine):
        return
    for name in _TABLE_EVENTS:
        if not event.contains(_table, name, clear_cache):
            event.listen(_table, name, clear_cache)
    ENGINE_EVENTS.attach(engine)


def unwatch() -> None:
    """Detach every listener :func:`watch` attached, and forget every cached id (without the
    listeners, a rebuilt table would go unnoticed)."""
    ENGINE_EVENTS.detach_all()
    for name in _TABLE_EVENTS:
        if event.contains(_table, name, clear_cache):
            event.remove(_table, name, clear_cache)
    clear_cache()
