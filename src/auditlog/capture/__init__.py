"""Capture: changes of registered models become ``audit_log`` rows in the same transaction.

The flow, module by module:

- :mod:`.listeners`: :func:`enable` / :func:`disable` / :func:`reset`, the one place listeners are
  attached and detached;
- :mod:`.flush`: the unit of work (``before_flush``, ``after_flush``);
- :mod:`.bulk`: the one algorithm for statements that write many rows, with two hooks,
  :mod:`.orm_statements` (``do_orm_execute``) and :mod:`.core_statements` (engine events);
- :mod:`.rows`: values from instance state, and the rows loaded from the tables;
- :mod:`.entries`: changes become rows (states, context, content type, ids), :mod:`.writer`
  inserts them, :mod:`.content_types` and :mod:`.ids` supply their ids;
- :mod:`.access`: explicit ``access`` entries; :mod:`.span`: marks on auditlog's own work;
  :mod:`.unaudited`: the opt-in warning for writes the log cannot see.
"""

from __future__ import annotations

from .access import log_access, log_access_async
from .listeners import disable, enable, reset
from .unaudited import UnauditedWriteWarning, warn_unaudited_writes

__all__ = [
    "UnauditedWriteWarning",
    "disable",
    "enable",
    "log_access",
    "log_access_async",
    "reset",
    "warn_unaudited_writes",
]
