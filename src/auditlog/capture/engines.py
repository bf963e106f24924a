"""Engine event listeners attached on first use and detached from every engine at once.

Session events are attached by :func:`auditlog.enable`; some capture work also needs the events of
the engines those sessions use (Core statements on their connections, real COMMITs for the content
type cache). Which engines those are is known only when a session first uses one, so each set of
engine listeners is an :class:`EngineListeners`: attached to an engine the first time it is needed,
and detached from all of them by :func:`auditlog.disable` (see :mod:`auditlog.capture.listeners`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["EngineListeners"]

Listener = tuple[str, Callable[..., Any], dict[str, Any]]


class EngineListeners:
    """A fixed set of ``(event name, function, listen options)`` for engines."""

    def __init__(self, *listeners: Listener) -> None:
        self.listeners = listeners
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._lock = threading.Lock()

    def attach(self, engine: Engine) -> None:
        """Listen on ``engine`` (once; safe from several threads)."""
        if engine in self._engines:
            return
        with self._lock:
            if engine in self._engines:
                return
            for name, fn, options in self.listeners:
                event.listen(engine, name, fn, **options)
            self._engines.add(engine)  # only once every listener is in place

    def detach_all(self) -> None:
        """Stop listening on every engine attached so far."""
        with self._lock:
            for engine in list(self._engines):
                for name, fn, _ in self.listeners:
                    if event.contains(engine, name, fn):
                        event.remove(engine, name, fn)
            self._engines.clear()

    def attached(self, engine: Engine) -> bool:
        """Whether these listeners are attached to ``engine``."""
        return engine in self._engines
