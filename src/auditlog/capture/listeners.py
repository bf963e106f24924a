"""Switching capture on and off: every listener auditlog attaches is attached and detached here.

:func:`enable` attaches the session listeners (:data:`SESSION_EVENTS`) to its target. The engine
listeners the capture needs are attached to an engine when an enabled session first uses it
(``after_begin``, and the content type cache on first use). :func:`disable` with no target
detaches all of them, from every session target and every engine, and :func:`reset` also forgets
every registration: a fresh start, as at import (when nothing is attached).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction, scoped_session, sessionmaker

from .._asyncio import AsyncSession, async_sessionmaker
from ..exceptions import ConfigurationError
from ..registry import plan_for, registry
from . import content_types, core_statements, deletes, refusal
from .flush import (
    SNAPSHOTS,
    after_flush,
    after_flush_postexec,
    after_soft_rollback,
    before_flush,
)
from .orm_statements import do_orm_execute
from .unaudited import UnauditedWriteWarning

__all__ = ["SESSION_EVENTS", "disable", "enable", "enabled_targets", "reset"]


def after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    """An enabled session began using ``connection``: capture Core statements on it."""
    core_statements.mark_connection(session, connection)


#: The session events of capture, attached by :func:`enable` and detached by :func:`disable`.
SESSION_EVENTS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("before_flush", before_flush),
    ("after_flush", after_flush),
    ("after_flush_postexec", after_flush_postexec),
    ("do_orm_execute", do_orm_execute),
    ("after_begin", after_begin),
    ("after_soft_rollback", after_soft_rollback),
)

_targets: list[Any] = []  # what the session events are attached to
_lock = threading.Lock()
_warned = [False]  # whether a flush by a session that is not enabled was pointed out


def _flushed_unaudited(session: Session, flush_context: Any) -> None:
    """``after_flush_postexec`` on every session while capture is enabled on some targets only:
    point out, once, a flush of registered models by a session that is not enabled."""
    if _warned[0] or flush_context.attributes.get(SNAPSHOTS) is not None:
        return  # already said, or an audited flush
    models = sorted(
        {state.class_.__name__ for state in flush_context.states if plan_for(state.mapper)}
    )
    if models:
        _warned[0] = True
        warnings.warn(
            f"a Session that auditlog is not enabled on flushed changes of {', '.join(models)}: "
            "they are not audited. Enable capture on it, or on its sessionmaker "
            "(auditlog.enable(...)); a session opened inside a flush hook needs it too. "
            "This is said once.",
            UnauditedWriteWarning,
            stacklevel=2,
        )


_WATCH = ("after_flush_postexec", _flushed_unaudited)


def _listen_target(target: Any, *, create: bool) -> Any:
    """The object SQLAlchemy's session events attach to for ``target``."""
    if target is None:
        return Session
    if isinstance(target, AsyncSession):
        return target.sync_session
    if isinstance(target, async_sessionmaker):
        # Listening on its sync class (Session by default) would audit every session: give the
        # maker a private subclass to listen on instead.
        current = target.kw.get("sync_session_class") or target.class_.sync_session_class
        if getattr(current, "_auditlog_private", False) or not create:
            return current
        private = type(current.__name__, (current,), {"_auditlog_private": True})
        target.kw["sync_session_class"] = private
        return private
    if isinstance(target, type) and issubclass(target, AsyncSession):
        return target.sync_session_class
    if isinstance(target, (Session, sessionmaker, scoped_session)) or (
        isinstance(target, type) and issubclass(target, Session)
    ):
        return target
    raise ConfigurationError(
        f"enable()/disable(): cannot audit {target!r}; give a Session subclass or instance, a "
        "sessionmaker, a scoped_session, an async_sessionmaker or an AsyncSession"
    )


def _detach(listen_on: Any) -> None:
    for name, fn in SESSION_EVENTS:
        if event.contains(listen_on, name, fn):
            event.remove(listen_on, name, fn)


def enable(target: Any = None) -> None:
    """Capture changes of registered models on ``target`` (every session when None). Idempotent."""
    listen_on = _listen_target(target, create=True)
    with _lock:
        for name, fn in SESSION_EVENTS:
            if not event.contains(listen_on, name, fn):
                event.listen(listen_on, name, fn)
        if not any(t is listen_on for t in _targets):
            _targets.append(listen_on)
        watch = not any(t is Session for t in _targets)  # some sessions are left out
        if watch != event.contains(Session, *_WATCH):
            (event.listen if watch else event.remove)(Session, *_WATCH)


def disable(target: Any = None) -> None:
    """Stop capturing on ``target``; with no target, everywhere: every listener :func:`enable`
    and the capture attached, to sessions and to engines, is detached."""
    if target is None:
        _disable_all()
        return
    listen_on = _listen_target(target, create=False)
    with _lock:
        _detach(listen_on)
        _targets[:] = [t for t in _targets if t is not listen_on]
        last = not _targets
    if last:
        _disable_all()  # nothing enabled any more: the engine listeners go too


def _disable_all() -> None:
    with _lock:
        for listen_on in _targets:
            _detach(listen_on)
        _targets.clear()
        if event.contains(Session, *_WATCH):
            event.remove(Session, *_WATCH)
        core_statements.ENGINE_EVENTS.detach_all()
        refusal.ENGINE_EVENTS.detach_all()
        deletes.ENGINE_EVENTS.detach_all()
        content_types.unwatch()


def enabled_targets() -> list[Any]:
    """What capture is enabled on now (``Session`` itself after ``enable()``)."""
    with _lock:
        return list(_targets)


def reset() -> None:
    """Detach every listener and forget every registration and cached id: as freshly imported."""
    _disable_all()
    registry.reset()
    _warned[0] = False
