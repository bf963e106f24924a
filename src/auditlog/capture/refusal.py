"""A transaction whose change could not be audited can no longer commit.

A statement that writes many rows (:mod:`.bulk`) changes them first and writes their entries
after. When the entries fail (a dropped table, a revoked privilege, a trigger on ``audit_log``,
the row-count check), PostgreSQL aborts the transaction by itself, but MariaDB and SQLite keep it
usable: an application that catches the error and commits would commit the change unaudited.

So the connection is marked: :func:`refused_on_error` records the failure, and the engine's
``commit`` event raises :class:`~auditlog.CaptureError` for as long as the change can be in the
transaction. A ``ROLLBACK`` clears the mark, and so does rolling back the savepoint the change
was made in (it undid the change); releasing that savepoint hands the mark to the enclosing one.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from ..exceptions import CaptureError
from .engines import EngineListeners

__all__ = ["ENGINE_EVENTS", "refused_on_error"]

_MARK = "auditlog.refused"


@dataclass
class _Refusal:
    transaction: weakref.ref[Any]  # the root transaction the failed change is in
    savepoint: str | None  # the innermost savepoint around the change, if any
    reason: str


def _savepoint_of(nested: Any) -> str | None:
    return getattr(nested, "_savepoint", None) if nested is not None else None


@contextmanager
def refused_on_error(connection: Connection) -> Iterator[None]:
    """Mark ``connection``'s transaction as uncommittable if the block raises."""
    try:
        yield
    except BaseException as exc:
        root = connection.get_transaction()
        if root is not None:
            ENGINE_EVENTS.attach(connection.engine)
            connection.info[_MARK] = _Refusal(
                weakref.ref(root),
                _savepoint_of(connection.get_nested_transaction()),
                f"{type(exc).__name__}: {exc}".splitlines()[0],
            )
        raise


def _current(connection: Connection) -> _Refusal | None:
    refusal: _Refusal | None = connection.info.get(_MARK)
    if refusal is not None and refusal.transaction() is not connection.get_transaction():
        connection.info.pop(_MARK, None)  # left over from a transaction that has ended
        return None
    return refusal


def _on_commit(connection: Connection) -> None:
    refusal = _current(connection)
    if refusal is not None:
        raise CaptureError(
            "this transaction cannot commit: a change in it could not be audited "
            f"({refusal.reason}); roll it back"
        )


def _on_rollback(connection: Connection) -> None:
    connection.info.pop(_MARK, None)


def _on_rollback_savepoint(connection: Connection, name: str, context: Any) -> None:
    refusal = _current(connection)
    if refusal is not None and refusal.savepoint == name:
        connection.info.pop(_MARK, None)  # the change was undone with its savepoint


def _on_release_savepoint(connection: Connection, name: str, context: Any) -> None:
    refusal = _current(connection)
    if refusal is not None and refusal.savepoint == name:
        releasing = connection.get_nested_transaction()
        refusal.savepoint = _savepoint_of(getattr(releasing, "_previous_nested", None))


#: The engine events of the refusal, attached to an engine the first time a failure is recorded.
#: Its commit listener goes before every other one: a refused COMMIT is never taken for a real
#: one (the content type cache promotes its ids on ``commit``).
ENGINE_EVENTS = EngineListeners(
    ("commit", _on_commit, {"insert": True}),
    ("rollback", _on_rollback, {}),
    ("rollback_savepoint", _on_rollback_savepoint, {}),
    ("release_savepoint", _on_release_savepoint, {}),
)
