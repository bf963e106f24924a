"""Errors raised by auditlog.

The hierarchy, one base and a few children that also subclass the builtin whose meaning fits::

    AuditLogError
     +-- ConfigurationError (ValueError)   bad register()/enable() arguments: names the attribute
     +-- ContextError (ValueError)         bad audit_context() values, or no active context to update
     +-- InvalidQueryError (ValueError)    bad query_history() argument: names the argument
     +-- CaptureError                      an audit entry could not be built; the flush fails with it
     +-- RevertError (ValueError)          an entry cannot be reverted: names what is missing
          +-- RevertConflict               later entries changed what the revert would restore
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuditLogError",
    "CaptureError",
    "ConfigurationError",
    "ContextError",
    "InvalidQueryError",
    "RevertConflict",
    "RevertError",
]


class AuditLogError(Exception):
    """Base of every error auditlog raises on purpose."""


class ConfigurationError(AuditLogError, ValueError):
    """A model registration or an enable()/disable() target is wrong."""


class ContextError(AuditLogError, ValueError):
    """An audit context value is invalid, or there is no context to update."""


class InvalidQueryError(AuditLogError, ValueError):
    """A query_history() argument is invalid; ``argument`` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message


class CaptureError(AuditLogError):
    """An audit entry could not be written; the flush that caused it fails."""


class RevertError(AuditLogError, ValueError):
    """An entry cannot be reverted (unknown, an access entry, a masked value, an object gone)."""


class RevertConflict(RevertError):
    """Later entries changed what a revert would restore; ``force=True`` reverts anyway.

    ``attributes`` names what they changed, ``entries`` lists their ids.
    """

    def __init__(self, message: str, attributes: Sequence[str], entries: Sequence[str]) -> None:
        super().__init__(message)
        self.attributes = tuple(attributes)
        self.entries = tuple(entries)
