"""auditlog: who changed what, when and from where, for SQLAlchemy applications.

Register models, enable capture on your sessions, and every flush writes ``AuditLog`` rows in the
same transaction; ``query_history`` reads them back in the shape of the ``GET /history/`` endpoint.
"""

from __future__ import annotations

from .capture import (
    UnauditedWriteWarning,
    disable,
    enable,
    log_access,
    log_access_async,
    warn_unaudited_writes,
)
from .context import AuditContext, audit_context, current_context, update_context
from .exceptions import (
    AuditLogError,
    CaptureError,
    ConfigurationError,
    ContextError,
    InvalidQueryError,
    RevertConflict,
    RevertError,
)
from .integrity import SealResult, VerifyReport, erase, protect, seal, unprotect, verify
from .lifecycle import PruneResult, prune
from .models import AuditLog, ContentType, create_tables, metadata
from .query import (
    AuditLogEntry,
    CursorPage,
    HistoryPage,
    query_history,
    query_history_async,
    query_history_cursor,
    query_history_cursor_async,
)
from .registry import MASKED, is_registered, register, unregister
from .relay import (
    RelayedEntry,
    RelaySource,
    RelayStatus,
    Sink,
    committed_entries,
    relay_status,
    run_relay,
)
from .serialize import decode_state, register_type
from .timetravel import Snapshot, object_as_of, revert, revert_transaction, state_as_of

__all__ = [
    "MASKED",
    "AuditContext",
    "AuditLog",
    "AuditLogEntry",
    "AuditLogError",
    "CaptureError",
    "ConfigurationError",
    "ContentType",
    "ContextError",
    "CursorPage",
    "HistoryPage",
    "InvalidQueryError",
    "PruneResult",
    "RelaySource",
    "RelayStatus",
    "RelayedEntry",
    "RevertConflict",
    "RevertError",
    "SealResult",
    "Sink",
    "Snapshot",
    "UnauditedWriteWarning",
    "VerifyReport",
    "audit_context",
    "committed_entries",
    "create_tables",
    "current_context",
    "decode_state",
    "disable",
    "enable",
    "erase",
    "is_registered",
    "log_access",
    "log_access_async",
    "metadata",
    "object_as_of",
    "protect",
    "prune",
    "query_history",
    "query_history_async",
    "query_history_cursor",
    "query_history_cursor_async",
    "register",
    "register_type",
    "relay_status",
    "revert",
    "revert_transaction",
    "run_relay",
    "seal",
    "state_as_of",
    "unprotect",
    "unregister",
    "update_context",
    "verify",
    "warn_unaudited_writes",
]

__version__ = "0.1.0"
