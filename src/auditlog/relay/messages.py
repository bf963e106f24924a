"""An entry as the relay sends it: the JSON of a ``GET /history/`` result, built from the row.

The states are read as the JSON text the database holds and copied into the message, never
decoded and encoded again (the relay's hottest path); an update's ``diff`` is the one part
that needs them decoded. ``AuditLogEntry.model_validate_json`` reads a message back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Mapping
from typing import Any

import pydantic_core
import sqlalchemy as sa

from ..models import audit_log_table
from ..query.schemas import AuditLogEntry

__all__ = ["COLUMNS", "PG_BODY", "RelayedEntry", "pg_relayed_entry", "relayed_entry"]

_log = audit_log_table
_JSON_COLUMNS = ("before_state", "after_state", "changed_fields", "extra")
#: What the relay reads of each entry: the JSON columns as their text.
COLUMNS = [
    sa.cast(column, sa.Text).label(column.name) if column.name in _JSON_COLUMNS else column
    for column in _log.c
    if column.name != "renamed_to"
]


#: On PostgreSQL the message is built by the database, on its own core: everything but the two
#: ids (ULIDs, formatted in Python), from the row joined to its content type.
PG_BODY = sa.literal_column(
    """json_build_object(
 'tenant_id', audit_log.tenant_id, 'user_id', audit_log.user_id,
 'created_by', audit_log.user_id, 'action_type', audit_log.action_type,
 'timestamp', to_char(audit_log.timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
 'ip_address', audit_log.ip_address, 'user_agent', coalesce(audit_log.user_agent, ''),
 'object_id', audit_log.object_id, 'content_type', audit_log.content_type,
 'model', audit_content_type.name,
 'model_label', substring(audit_content_type.name from '[^.]*$'),
 'before_state', audit_log.before_state, 'after_state', audit_log.after_state,
 'changed_fields', audit_log.changed_fields, 'extra', audit_log.extra,
 'diff', CASE WHEN jsonb_typeof(audit_log.changed_fields) = 'array'
   AND jsonb_typeof(audit_log.before_state) = 'object'
   AND jsonb_typeof(audit_log.after_state) = 'object'
   THEN coalesce((SELECT jsonb_object_agg(f, jsonb_build_array(
     audit_log.before_state -> f, audit_log.after_state -> f))
     FROM jsonb_array_elements_text(audit_log.changed_fields) AS f), '{}'::jsonb) END
)::text""",
    sa.Text,
).label("body")


@dataclasses.dataclass(frozen=True)
class RelayedEntry:
    """One committed entry to send: its id, what subjects are made of, and its JSON."""

    id: str
    tenant_id: str | None
    model: str | None
    action_type: str
    content_type: int
    payload: bytes

    def json(self) -> bytes:
        """The entry as JSON (a ``GET /history/`` result)."""
        return self.payload

    @functools.cached_property
    def entry(self) -> AuditLogEntry:
        """The entry, parsed (for sinks that want objects rather than JSON)."""
        return AuditLogEntry.model_validate_json(self.payload)


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def relayed_entry(row: Mapping[Any, Any], model: str | None) -> RelayedEntry:
    """The message of an ``audit_log`` row read with :data:`COLUMNS`."""
    raw = {name: row[name] if row[name] is not None else "null" for name in _JSON_COLUMNS}
    scalars = {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "user_id": row["user_id"],
        "created_by": row["user_id"],
        "action_type": row["action_type"],
        "timestamp": _timestamp(row["timestamp"]),
        "ip_address": row["ip_address"],
        "user_agent": row["user_agent"] if row["user_agent"] is not None else "",
        "object_id": row["object_id"],
        "content_type": row["content_type"],
        "model": model,
        "model_label": model.rpartition(".")[2] if model is not None else None,
        "transaction_id": row["transaction_id"],
    }
    diff = "null"
    if raw["changed_fields"] != "null" and raw["before_state"] != "null":
        fields = json.loads(raw["changed_fields"])
        before, after = json.loads(raw["before_state"]), json.loads(raw["after_state"])
        if isinstance(fields, list) and isinstance(before, dict) and isinstance(after, dict):
            changes = {f: [before.get(f), after.get(f)] for f in fields}
            diff = pydantic_core.to_json(changes).decode()
    head = pydantic_core.to_json(scalars)[:-1].decode()
    tail = "".join(f',"{name}":{raw[name]}' for name in _JSON_COLUMNS)
    payload = f'{head}{tail},"diff":{diff}}}'.encode()
    return RelayedEntry(
        id=row["id"],
        tenant_id=row["tenant_id"],
        model=model,
        action_type=row["action_type"],
        content_type=row["content_type"],
        payload=payload,
    )


def pg_relayed_entry(row: Mapping[Any, Any]) -> RelayedEntry:
    """The message of a row read with :data:`PG_BODY` (and the id, tenant, action, content type,
    model name and transaction id)."""
    transaction = row["transaction_id"]
    shown = f'"{transaction}"' if transaction else "null"
    ids = f'{{"id":"{row["id"]}","transaction_id":{shown},'
    return RelayedEntry(
        id=row["id"],
        tenant_id=row["tenant_id"],
        model=row["name"],
        action_type=row["action_type"],
        content_type=row["content_type"],
        payload=(ids + row["body"][1:]).encode(),
    )
