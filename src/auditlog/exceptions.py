"""Errors raised by auditlog.

The hierarchy, one base and a few children that also subclass the builtin whose meaning fits::

    AuditLogError
     +-- ConfigurationError (ValueError)   bad register()/enable() arguments: names the attribute
     +-- ContextError (ValueError)         bad audit_context() values, or no active context to update
     +-- InvalidQueryError (ValueError)    bad query_history() argument: names the argument
     +-- CaptureError                      an audit entry could not be built; the flush fails with it
"""

from __future__ import annotations

__all__ = [
    "AuditLogError",
    "CaptureError",
    "ConfigurationError",
    "ContextError",
    "InvalidQueryError",
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
