"""An object's recorded state at any moment: the after-state of its last entry up to then.

Entries are ordered by ``(timestamp, id)`` (the entries of one flush share a timestamp). The
state at ``at`` is read with one query: the last entry of the object at or before ``at`` (an
``access`` changes nothing and is passed over). An object whose key changed is found under both
keys: its renaming entry is filed under the key it had and names the one it took
(``renamed_to``), and the ``object_id`` and ``renamed_to`` indexes each serve their half.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.orm import Mapper, Session

from ..documents import Unreadable, readable
from ..exceptions import InvalidQueryError
from ..models import ULID_PATTERN, content_type_table, ulid_hex, utc_bound
from ..models import audit_log_table as _t
from ..registry import model_name
from ..serialize import MASKED, decode_state, object_id_of

_log = logging.getLogger("auditlog.timetravel")

__all__ = [
    "ENTRY_ID",
    "At",
    "Snapshot",
    "latest_entry",
    "object_as_of",
    "position",
    "state_as_of",
    "unknown_if_pruned",
]

#: The text of an entry id (a ULID, in Crockford's base32).
ENTRY_ID = re.compile(ULID_PATTERN)
#: A moment: an aware datetime (a naive one is UTC, as stored), or the id of an entry, meaning
#: just after that entry.
At = dt.datetime | str

_COLUMNS = (
    _t.c.id, _t.c.timestamp, _t.c.action_type, _t.c.object_id, _t.c.renamed_to,
    readable(_t.c.after_state),
)  # fmt: skip


@dataclass(frozen=True)
class Snapshot:
    """An object as its entries recorded it at one moment."""

    #: a transient instance of the model (never added to a session) holding the recorded values
    instance: Any
    #: the recorded state, as the entry's ``after_state`` holds it
    state: dict[str, Any]
    #: attributes left unset: masked, not recorded (excluded), and collections (recorded as the
    #: related objects' ids, which ``state`` holds)
    unset: frozenset[str]
    #: the entry the state comes from, and its time
    entry_id: str
    timestamp: dt.datetime


def position(
    session: Session, at: At, *, tenant_id: str | None = None
) -> tuple[dt.datetime, str | None]:
    """``at`` as a place in the order of entries: a time (every entry at that time included),
    or an entry's time and id (entries up to that one; of ``tenant_id``'s when given). Raises
    ``InvalidQueryError`` naming ``at``."""
    if isinstance(at, dt.datetime):
        return utc_bound(at), None
    if not isinstance(at, str):
        raise InvalidQueryError("at", f"expected a datetime or an entry id, got {at!r}")
    try:
        ulid_hex(at)
    except ValueError:
        raise InvalidQueryError("at", f"not an entry id (a ULID): {at!r}") from None
    query = sa.select(_t.c.timestamp).where(_t.c.id == at)
    if tenant_id is not None:
        query = query.where(_t.c.tenant_id == tenant_id)
    found = session.execute(query).scalar()
    if found is None:
        raise InvalidQueryError("at", f"no audit entry has the id {at!r}")
    return found, at


def _up_to(moment: dt.datetime, entry: str | None) -> Any:
    if entry is None:
        return _t.c.timestamp <= moment
    return sa.or_(_t.c.timestamp < moment, sa.and_(_t.c.timestamp == moment, _t.c.id <= entry))


def latest_entry(
    session: Session,
    content_type: int | str,
    object_id: str,
    at: tuple[dt.datetime, str | None],
    *,
    tenant_id: str | None = None,
) -> Row[Any] | None:
    """The last entry up to ``at`` that changed the object ``object_id`` of ``content_type`` (an
    id, or a model's name): one query."""
    if isinstance(content_type, str):
        named = content_type_table.c.name == content_type
        kind: Any = sa.select(content_type_table.c.id).where(named).scalar_subquery()
    else:
        kind = content_type
    query = (
        sa.select(*_COLUMNS)
        .where(
            _t.c.content_type == kind,
            sa.or_(_t.c.object_id == object_id, _t.c.renamed_to == object_id),
            _t.c.action_type != "access",
            _up_to(*at),
        )
        .order_by(_t.c.timestamp.desc(), _t.c.id.desc())
        .limit(1)
    )
    if tenant_id is not None:
        query = query.where(_t.c.tenant_id == tenant_id)
    found: Row[Any] | None = session.execute(query).first()  # type: ignore[assignment]
    return found


def state_of(entry: Row[Any] | None, object_id: str) -> dict[str, Any] | None:
    """The state an entry leaves the object ``object_id`` in: None when it deleted the object,
    moved it to another key, or there is no entry."""
    if entry is None or entry.action_type == "delete":
        return None
    if entry.renamed_to is not None and entry.renamed_to != object_id:
        return None  # the object left this key
    state: Any = entry.after_state
    if isinstance(state, Unreadable):
        # text that is not JSON, on a database that keeps JSON as text: shown as stored
        _log.warning(
            "audit_log row %r holds an after_state that is not JSON (%s)", entry.id, state.error
        )
        return {"value": state.text}
    if state is not None and not isinstance(state, dict):
        # a row auditlog did not write (a trigger's, a migration's): shown as the history shows it
        _log.warning("audit_log row %r holds a state that is not a JSON object", entry.id)
        return {"value": state}
    return state


def unknown_if_pruned(session: Session, at: At, tenant: str | None) -> None:
    """No entry of the object up to ``at``: after a prune, that says nothing (its entries may
    be among those removed), so the state is unknown rather than "no object"."""
    from ..lifecycle.prune import pruned_before

    cutoff = pruned_before(session.connection(), tenant)
    if cutoff is not None:
        shown = at.isoformat() if isinstance(at, dt.datetime) else at  # a datetime or an entry id
        raise InvalidQueryError(
            "at",
            f"the object has no entry up to {shown}, and the entries before "
            f"{cutoff.isoformat()} were pruned: its state then is unknown",
        )


def state_as_of(
    session: Session, model: type, object_id: Any, at: At, *, tenant_id: Any = None
) -> dict[str, Any] | None:
    """The recorded state of one object at ``at``, as ``after_state`` holds it, or None when
    the object did not exist then. When the log was pruned and no entry of the object is left
    up to ``at``, its state is unknown: ``InvalidQueryError``.

    ``object_id`` is the primary key value, a tuple for a composite key, or its text as stored;
    ``at`` an aware datetime, or an entry id meaning just after that entry. ``tenant_id`` limits
    the entries read to one tenant's.
    """
    oid = object_id_of(object_id)
    tenant = None if tenant_id is None else str(tenant_id)
    where = position(session, at, tenant_id=tenant)
    entry = latest_entry(session, model_name(model), oid, where, tenant_id=tenant)
    if entry is None:
        unknown_if_pruned(session, at, tenant)
    return state_of(entry, oid)


def object_as_of(
    session: Session, model: type, object_id: Any, at: At, *, tenant_id: Any = None
) -> Snapshot | None:
    """:func:`state_as_of` as Python values: a transient instance of ``model`` with every
    recorded value decoded through its column type; masked, unrecorded and collection
    attributes are left unset and listed in :attr:`Snapshot.unset`."""
    oid = object_id_of(object_id)
    tenant = None if tenant_id is None else str(tenant_id)
    where = position(session, at, tenant_id=tenant)
    entry = latest_entry(session, model_name(model), oid, where, tenant_id=tenant)
    if entry is None:
        unknown_if_pruned(session, at, tenant)
    state = state_of(entry, oid)
    if entry is None or state is None:
        return None
    mapper: Mapper[Any] = sa.inspect(model)
    columns = set(mapper.column_attrs.keys())
    values = decode_state(model, {k: v for k, v in state.items() if k in columns and v != MASKED})
    instance = mapper.class_manager.new_instance()
    for key, value in (values or {}).items():
        setattr(instance, key, value)
    unset = frozenset(mapper.attrs.keys()) - set(values or {})
    return Snapshot(instance, state, unset, entry.id, entry.timestamp)
