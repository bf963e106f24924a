"""Deprecated alias: the endpoint's framework-free core is :mod:`auditlog.integrations.http`, and
``make_wsgi_app`` is in :mod:`auditlog.integrations.server`. Removed in 0.3."""

from __future__ import annotations

import warnings
from typing import Any

from .integrations import http, server


def __getattr__(name: str) -> Any:
    home = server if name == "make_wsgi_app" else http
    value = getattr(home, name)  # AttributeError for names neither module has
    warnings.warn(
        f"auditlog.http.{name} is deprecated: import it from {home.__name__}",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
