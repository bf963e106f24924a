"""Marks on auditlog's own work, so that capture never captures itself.

- A *span* (a contextvar counter) is open while a flush or a captured statement runs: writes
  inside it are audited ones, which the Core hook and the unaudited-write warning leave alone.
- :data:`INTERNAL` is the execution option on the statements auditlog runs itself (reading rows
  before and after a change); the statement hooks pass them through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = [
    "INTERNAL",
    "INTERNAL_OPTIONS",
    "audited_write",
    "begin_audited_write",
    "end_audited_write",
    "in_audited_write",
]

#: Execution option set on the statements auditlog runs itself.
INTERNAL = "auditlog_internal"
#: Execution options of those statements: marked, and never autoflushing the session.
INTERNAL_OPTIONS = {INTERNAL: True, "autoflush": False}

_depth: ContextVar[int] = ContextVar("auditlog_audited_write", default=0)


@contextmanager
def audited_write() -> Iterator[None]:
    """Mark the writes made inside the block as audited ones."""
    token = _depth.set(_depth.get() + 1)
    try:
        yield
    finally:
        _depth.reset(token)


def begin_audited_write() -> Token[int]:
    """Like :func:`audited_write`, for a span that starts and ends in two listeners."""
    return _depth.set(_depth.get() + 1)


def end_audited_write(token: Token[int] | None = None) -> None:
    """End a span begun with :func:`begin_audited_write` (all of them when no token is given)."""
    if token is None:
        _depth.set(0)
        return
    try:
        _depth.reset(token)
    except ValueError:  # reset from another context: fall back to clearing
        _depth.set(0)


def in_audited_write() -> bool:
    """True inside an audited flush or statement."""
    return _depth.get() > 0
