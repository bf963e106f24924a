"""Changes become ``audit_log`` rows: states encoded by the plan, the request context attached,
one write per flush (or statement) on its own connection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..context import AuditContext, current_context
from ..registry import MASKED, Plan
from ..serialize import encode_value, object_id_text
from . import content_types
from .ids import new_ulids, ulid_stream
from .rows import Values, related_ids
from .writer import insert_rows

__all__ = ["Change", "audit_row", "transaction_id", "write_changes"]

_TRANSACTION = "auditlog.transaction"


@dataclass(slots=True)
class Change:
    """One object's change, before encoding: values are Python values as SQLAlchemy holds them."""

    plan: Plan
    action: str
    pk: tuple[Any, ...]
    before: Values | None
    after: Values | None
    #: the primary key an update gave the object, when it changed it (``pk`` is the one it had)
    renamed_to: tuple[Any, ...] | None = None


def _encode(plan: Plan, values: Values) -> Values:
    out = {key: (MASKED if masked else enc(values.get(key))) for key, enc, masked in plan.fields}
    for key, masked in plan.collections:
        if key in values:
            out[key] = MASKED if masked else related_ids(values[key])
    return out


def _encode_update(plan: Plan, before: Values, after: Values) -> tuple[Values, Values, list[str]]:
    """Both states of an update, encoded once, and the recorded attributes that changed.

    A masked attribute is compared on its real values, then hidden on both sides.
    """
    old_state: Values = {}
    new_state: Values = {}
    changed: list[str] = []
    for key, enc, masked in plan.fields:
        old = before.get(key)
        new = after.get(key)
        if old is new:
            old = new = enc(old)  # untouched: the same object on both sides
        else:
            old, new = enc(old), enc(new)
            if old != new:
                changed.append(key)
        if masked:
            old = new = MASKED
        old_state[key], new_state[key] = old, new
    for key, masked in plan.collections:
        if key in before or key in after:
            old, new = related_ids(before.get(key)), related_ids(after.get(key))
            if old != new:
                changed.append(key)
            if masked:
                old = new = MASKED
            old_state[key], new_state[key] = old, new
    return old_state, new_state, changed


def transaction_id(session: Session) -> bytes:
    """A ULID shared by every entry of the session's current database transaction."""
    root = session.get_transaction()
    held = session.info.get(_TRANSACTION)
    if held is not None and held[0] is root:
        return held[1]  # type: ignore[no-any-return]
    # stamped from datetime, as entry ids are: a test's frozen clock may give time.time_ns() a
    # float, which ULID() cannot take
    txid = new_ulids(dt.datetime.now(dt.timezone.utc), 1)[0]
    session.info[_TRANSACTION] = (root, txid)
    return txid


def audit_row(ctx: AuditContext, extra: Any, content_type: int, change: Change) -> Values:
    """The columns of ``change``'s entry that come from the context and the change itself."""
    return {
        "tenant_id": ctx.tenant_id,
        "user_id": ctx.user_id,
        "action_type": change.action,
        "ip_address": ctx.ip_address,
        "user_agent": ctx.user_agent or "",
        "object_id": object_id_text(change.pk),
        "renamed_to": None if change.renamed_to is None else object_id_text(change.renamed_to),
        "content_type": content_type,
        "extra": extra,
    }


def _entries(
    changes: Iterable[Change],
    content_type: Callable[[Plan], int],
    ctx: AuditContext,
    at: dt.datetime,
    txid: bytes,
    ids: Iterator[bytes],
) -> Iterator[tuple[Plan, Values]]:
    """The row of each change with its plan, built when asked for (an update that changed
    nothing recorded has none)."""
    extra = encode_value(dict(ctx.extra)) if ctx.extra else None
    for change in changes:
        plan = change.plan
        changed = None
        before: Values | None
        after: Values | None
        if change.action == "update":
            assert change.before is not None and change.after is not None
            before, after, changed = _encode_update(plan, change.before, change.after)
            if not changed:
                continue
        else:
            before = None if change.before is None else _encode(plan, change.before)
            after = None if change.after is None else _encode(plan, change.after)
        row = audit_row(ctx, extra, content_type(plan), change)
        row["before_state"] = before
        row["after_state"] = after
        row["changed_fields"] = changed
        row["transaction_id"] = txid
        row["timestamp"] = at
        row["id"] = next(ids)
        yield plan, row


def write_changes(
    session: Session,
    changes: Iterable[Change],
    plans: Collection[Plan] | None = None,
    count: int | None = None,
    *,
    at: dt.datetime | None = None,
    ids: Iterator[bytes] | None = None,
) -> int:
    """Write an entry per change (updates that changed nothing recorded are dropped); returns
    how many were written. All rows of one connection go in one statement (or COPY stream).

    ``changes`` may be lazy, with ``plans`` (every plan it can yield) and ``count`` (at most how
    many): where all of them write on one connection, the changes and their rows are then built
    while the rows stream, so that on PostgreSQL the Python work overlaps the server's.
    """
    if plans is None or count is None:
        changes = list(changes)
        plans = {change.plan for change in changes}
        count = len(changes)
    if not count:
        return 0
    ctx = current_context()
    now = at or dt.datetime.now(dt.timezone.utc)
    if ids is None:
        ids = ulid_stream(now, count)
    txid = transaction_id(session)
    connections = {
        plan: session.connection(bind_arguments={"mapper": plan.mapper}) for plan in plans
    }
    known = {
        plan: content_types.known_id(connection, plan) for plan, connection in connections.items()
    }

    def content_type(plan: Plan) -> int:
        found = known[plan]
        if found is None:  # the model's first entry here: looked up (or created) only now
            found = known[plan] = content_types.content_type_id(session, connections[plan], plan)
        return found

    entries = _entries(changes, content_type, ctx, now, txid, ids)
    targets = set(connections.values())
    if len(targets) == 1 and None not in known.values():
        # The usual case: the rows (and the changes) are built while they are written, so that
        # on PostgreSQL the Python work overlaps the server's. Nothing else may run on the
        # connection meanwhile, hence the content type ids known beforehand.
        (connection,) = targets
        return insert_rows(connection, (row for _, row in entries), count)
    # A content type to look up, or several databases: the rows first, then a write for each.
    by_connection: dict[Connection, list[Values]] = {}
    for plan, row in entries:
        by_connection.setdefault(connections[plan], []).append(row)
    return sum(insert_rows(connection, rows) for connection, rows in by_connection.items())
