"""``GET /history/state/``: one object's recorded state at a moment, read-only, tenant-scoped.

Parameters: ``content_type`` (the id, or the model's name ``module.Class``), ``object_id`` (the
text entries hold) and ``at`` (an ISO 8601 time, UTC when naive, or an entry id meaning just
after that entry; now when absent). Authentication and errors are those of ``GET /history/``
(:mod:`auditlog.integrations.http`); only the caller's tenant's entries are read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ..models import MAX_ID
from ..query.filters import content_type_named
from ..timetravel.asof import ENTRY_ID, latest_entry, position, state_of, unknown_if_pruned
from .http import (
    DIGITS,
    HTTPError,
    Principal,
    answering,
    decode_query,
    parse_datetime,
    parse_integer,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "STATE_PARAMETERS",
    "ObjectState",
    "StateQuery",
    "object_state",
    "parse_state_query",
    "run_state_query",
    "state_at",
]


class ObjectState(BaseModel):
    """An object's recorded state at a moment."""

    content_type: int | str = Field(description="The model: its content type id, or its name.")
    object_id: str = Field(description="The object's primary key, as entries hold it.")
    at: dt.datetime | str = Field(description="The moment asked for: a time, or an entry id.")
    entry_id: str | None = Field(description="The entry the state comes from, or null.")
    timestamp: dt.datetime | None = Field(description="That entry's time, or null.")
    state: dict[str, Any] | None = Field(
        description="The object as that entry left it, or null when it did not exist then."
    )


class StateQuery(BaseModel):
    """The validated parameters of ``GET /history/state/``."""

    content_type: int | str
    object_id: str
    at: dt.datetime | str


#: The parameters, with their descriptions (also the OpenAPI parameters of the route).
STATE_PARAMETERS: dict[str, tuple[dict[str, Any], str, bool]] = {
    "content_type": (
        {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_ID}, {"type": "string"}]},
        "The model: its content type id, or its name (`module.Class`).",
        True,
    ),
    "object_id": ({"type": "string"}, "The object's primary key, as entries hold it.", True),
    "at": (
        {"type": "string"},
        "An ISO 8601 time (UTC when naive), or an entry id meaning just after that entry; "
        "now when absent.",
        False,
    ),
}


def parse_state_query(query_string: bytes | str) -> StateQuery:
    """The parameters of a raw query string; :class:`HTTPError` (400) naming a bad one."""
    given = decode_query(query_string, STATE_PARAMETERS)
    for name, (_, _, required) in STATE_PARAMETERS.items():
        if required and name not in given:
            raise HTTPError.bad_parameter(name, "required")
    kind = given["content_type"]
    content_type: int | str = kind
    if DIGITS.fullmatch(kind):  # an id, as on GET /history/; else a model's name
        content_type = parse_integer("content_type", kind, 0, MAX_ID)
    raw_at = given.get("at")
    at: dt.datetime | str
    if raw_at is None:
        at = dt.datetime.now(dt.timezone.utc)
    elif ENTRY_ID.fullmatch(raw_at):
        at = raw_at.upper()
    else:
        at = parse_datetime("at", raw_at)
    return StateQuery(content_type=content_type, object_id=given["object_id"], at=at)


def object_state(
    session_factory: Callable[[], Session], principal: Principal, query_string: bytes | str
) -> ObjectState:
    """Parse and run one request (sync mounts); :class:`HTTPError` for 400 and 503."""
    query = parse_state_query(query_string)
    with answering(), session_factory() as session:
        return run_state_query(session, principal, query)


def run_state_query(session: Session, principal: Principal, query: StateQuery) -> ObjectState:
    """The state ``query`` asks for, from the principal's tenant's entries only."""
    with answering():
        return state_at(
            session, query.content_type, query.object_id, query.at, tenant_id=principal.tenant_id
        )


def state_at(
    session: Session,
    content_type: int | str,
    object_id: str,
    at: dt.datetime | str,
    *,
    tenant_id: str | None = None,
) -> ObjectState:
    """The recorded state of one object at ``at``, with the entry it comes from. A model's name
    may be its class name alone while one model has it; an unknown one is an
    :class:`~auditlog.InvalidQueryError`, not an object without a state."""
    kind = (
        content_type if isinstance(content_type, int) else content_type_named(session, content_type)
    )
    entry = latest_entry(
        session,
        kind,
        object_id,
        position(session, at, tenant_id=tenant_id),
        tenant_id=tenant_id,
    )
    if entry is None:
        unknown_if_pruned(session, at, tenant_id)
    return ObjectState(
        content_type=content_type,
        object_id=object_id,
        at=at,
        entry_id=entry.id if entry is not None else None,
        timestamp=entry.timestamp if entry is not None else None,
        state=state_of(entry, object_id),
    )
