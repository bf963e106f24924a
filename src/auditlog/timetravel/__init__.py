"""Time travel: an object's state at any moment, and undoing entries.

- :mod:`.asof`: :func:`state_as_of` (the recorded state, as JSON) and :func:`object_as_of` (the
  same as a transient instance), each one indexed query;
- :mod:`.revert`: :func:`revert` (one entry) and :func:`revert_transaction` (every entry of one
  database transaction), as ordinary changes on the caller's session.
"""

from __future__ import annotations

from .asof import At, Snapshot, object_as_of, state_as_of
from .revert import revert, revert_transaction

__all__ = ["At", "Snapshot", "object_as_of", "revert", "revert_transaction", "state_as_of"]
