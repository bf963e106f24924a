"""Marks on auditlog's own work, so that capture never captures itself.

- A *span* is open while an audited flush or a captured statement runs: writes inside it are
  audited ones, which the Core hook and the unaudited-write warning leave alone. A captured
  statement's span is a block (:func:`audited_write`). A flush's span lasts for as long as its
  session is flushing: SQLAlchemy fires no event at the end of every flush (one with nothing to
  write returns early, a failing ``before_flush`` listener raises before any), so the span is
  tied to the session's own flushing state rather than to a closing event, and a flush that
  ends without one leaves nothing open behind it.
- :data:`INTERNAL` is the execution option on the statements auditlog runs itself (reading rows
  before and after a change); the statement hooks pass them through untouched.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "INTERNAL",
    "INTERNAL_OPTIONS",
    "audited_write",
    "begin_flush",
    "end_flush",
    "in_audited_write",
]

#: Execution option set on the statements auditlog runs itself.
INTERNAL = "auditlog_internal"
#: Execution options of those statements: marked, and never autoflushing the session.
INTERNAL_OPTIONS = {INTERNAL: True, "autoflush": False}

_depth: ContextVar[int] = ContextVar("auditlog_audited_write", default=0)
#: the sessions whose audited flush runs in this context (``Session._flushing`` says when it ends)
_flushes: ContextVar[tuple[weakref.ref[Any], ...]] = ContextVar("auditlog_flushes", default=())


@contextmanager
def audited_write() -> Iterator[None]:
    """Mark the writes made inside the block as audited ones."""
    token = _depth.set(_depth.get() + 1)
    try:
        yield
    finally:
        _depth.reset(token)


def begin_flush(session: Any) -> None:
    """``session``'s flush is an audited one: its writes are audited until it stops flushing."""
    _flushes.set((*_open_flushes(), weakref.ref(session)))


def end_flush(session: Any) -> None:
    """``session``'s audited flush is over (also found out without this call)."""
    _flushes.set(tuple(ref for ref in _open_flushes() if ref() is not session))


def _open_flushes() -> tuple[weakref.ref[Any], ...]:
    """The audited flushes of this context still running (forgetting any that ended)."""
    held = _flushes.get()
    running = tuple(ref for ref in held if getattr(ref(), "_flushing", False))
    if len(running) != len(held):
        _flushes.set(running)
    return running


def in_audited_write() -> bool:
    """True inside an audited flush or statement."""
    return _depth.get() > 0 or bool(_open_flushes())
