"""Pydantic models of the seed's ``GET /history/`` page and of one entry, field for field."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

__all__ = ["SEED_EXAMPLE", "AuditLogEntry", "CursorPage", "HistoryPage"]

ActionType = Literal["create", "update", "delete", "access"]

#: The response example of the original API document, used in the OpenAPI schema.
SEED_EXAMPLE: dict[str, Any] = {
    "count": 1,
    "total_pages": 1,
    "current_page": 1,
    "has_previous": False,
    "has_next": False,
    "previous_page": None,
    "next_page": None,
    "results": [
        {
            "id": "01JQ8RREEM71MEZJXNECGE0ATA",
            "tenant_id": "23067dbc-6c62-4203-9014-7100e4ffe811",
            "user_id": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
            "created_by": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
            "action_type": "create",
            "timestamp": "2025-03-26T13:53:02.869449Z",
            "ip_address": None,
            "user_agent": "",
            "object_id": "01JQ8RRBB2XRSVTCG11Y6JKCKH",
            "before_state": None,
            "after_state": {
                "id": "01JQ8RRBB2XRSVTCG11Y6JKCKH",
                "name": "Sukumar",
                "status": "active",
                "tenant_id": "23067dbc-6c62-4203-9014-7100e4ffe811",
                "created_at": "2025-03-26T13:52:59.683345Z",
            },
            "content_type": 18,
        }
    ],
}


_ENTRY_COLUMNS = (
    "id",
    "tenant_id",
    "user_id",
    "action_type",
    "timestamp",
    "ip_address",
    "user_agent",
    "object_id",
    "before_state",
    "after_state",
    "content_type",
)


class AuditLogEntry(BaseModel):
    """One audit entry as the seed's endpoint shows it."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: str = Field(description="Unique identifier for the audit log entry (a ULID).")
    tenant_id: str | None = Field(description="Tenant associated with the audit log.")
    user_id: str | None = Field(description="ID of the user who performed the action.")
    created_by: str | None = Field(
        default=None, description="ID of the user who created this audit entry (= user_id)."
    )
    action_type: ActionType = Field(description="Type of action performed.")
    timestamp: dt.datetime = Field(description="When the action occurred (UTC).")
    ip_address: str | None = Field(description="IP address the action came from.")
    user_agent: str = Field(description="User agent of the client, '' when unknown.")
    object_id: str = Field(description="ID of the object acted upon.")
    before_state: dict[str, Any] | None = Field(description="The object before the action.")
    after_state: dict[str, Any] | None = Field(description="The object after the action.")
    content_type: int = Field(description="Id of the object's model in audit_content_type.")

    @model_validator(mode="before")
    @classmethod
    def _created_by_is_user_id(cls, data: Any) -> Any:
        """The seed names the actor ``created_by`` in its schema and ``user_id`` in its example."""
        if not isinstance(data, dict):
            data = {name: getattr(data, name) for name in _ENTRY_COLUMNS}
        if data.get("created_by") is None:
            data = {**data, "created_by": data.get("user_id")}
        return data

    @field_serializer("timestamp", when_used="json")
    def _seed_timestamp(self, value: dt.datetime) -> str:
        """UTC, six fraction digits and ``Z``, as the seed: ``2025-03-26T13:53:02.869449Z``."""
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HistoryPage(BaseModel):
    """One page of history, newest first, with the seed's page-number pagination fields."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"example": SEED_EXAMPLE})

    count: int = Field(description="Entries matching the filters, on all pages.")
    total_pages: int
    current_page: int
    has_previous: bool
    has_next: bool
    previous_page: int | None
    next_page: int | None
    results: list[AuditLogEntry]


class CursorPage(BaseModel):
    """One page of history in keyset (cursor) mode, newest first.

    ``next_cursor`` reads on to older entries, ``previous_cursor`` back to newer ones; each is
    null exactly when its ``has_*`` flag is false. Cursors are opaque, URL-safe strings.
    """

    model_config = ConfigDict(frozen=True)

    has_next: bool = Field(description="Older entries follow this page.")
    has_previous: bool = Field(description="Newer entries precede this page.")
    next_cursor: str | None = Field(description="Cursor of the page of older entries, or null.")
    previous_cursor: str | None = Field(description="Cursor of the page of newer entries, or null.")
    results: list[AuditLogEntry]
