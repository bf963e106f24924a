"""Explicit ``access`` entries: who looked at what, recorded in the session's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from ulid import ULID

from .._asyncio import AsyncSession
from ..exceptions import ConfigurationError
from ..registry import default_plan, plan_for
from .entries import Change, write_changes
from .ids import new_ulids
from .rows import identity_of

__all__ = ["log_access", "log_access_async"]


def log_access(session: Session | AsyncSession, obj: Any) -> str:
    """Record an ``access`` entry for ``obj`` in the session's transaction; returns the entry id.

    A pending object is flushed first so that it has a primary key. Works for any mapped object,
    registered or not; the entry's states are null.
    """
    if isinstance(session, AsyncSession):
        raise TypeError(
            "log_access() needs a sync Session; with an AsyncSession use "
            "`await auditlog.log_access_async(session, obj)`"
        )
    state = instance_state(obj)
    if state.session_id != session.hash_key:
        raise ConfigurationError(f"log_access(): {obj!r} is not in this session")
    if state.key is None:
        session.flush()
    plan = plan_for(state.mapper) or default_plan(state.mapper)
    now = dt.datetime.now(dt.timezone.utc)
    ids = new_ulids(now, 1)
    change = Change(plan, "access", identity_of(state), None, None)
    write_changes(session, [change], at=now, ids=iter(ids))
    return str(ULID.from_bytes(ids[0]))


async def log_access_async(session: AsyncSession, obj: Any) -> str:
    """:func:`log_access` for an ``AsyncSession``."""
    return await session.run_sync(log_access, obj)
