"""Pydantic models of the ``GET /history/`` page and of one entry, field for field."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from ..models import ActionType

__all__ = ["ENTRY_COLUMNS", "EXAMPLE_PAGE", "AuditLogEntry", "CursorPage", "HistoryPage"]

#: An example page, shown in the OpenAPI schema.
EXAMPLE_PAGE: dict[str, Any] = {
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


class AuditLogEntry(BaseModel):
    """One audit entry as ``GET /history/`` shows it."""

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
        """The actor is both ``user_id`` and ``created_by``, the name the endpoint's schema uses."""
        if not isinstance(data, dict):
            data = {name: getattr(data, name) for name in ENTRY_COLUMNS}
        if data.get("created_by") is None:
            data = {**data, "created_by": data.get("user_id")}
        return data

    @field_serializer("timestamp", when_used="json")
    def _utc_timestamp(self, value: dt.datetime) -> str:
        """UTC, six fraction digits and ``Z``: ``2025-03-26T13:53:02.869449Z``."""
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HistoryPage(BaseModel):
    """One page of history, newest first, with page-number pagination fields."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"example": EXAMPLE_PAGE})

    count: int = Field(description="Entries matching the filters, on all pages.")
    total_pages: int
    current_page: int
    has_previous: bool
    has_next: bool
    previous_page: int | None
    next_page: int | None
    results: list[AuditLogEntry]

    @classmethod
    def numbered(
        cls, count: int, page: int, page_size: int, results: list[AuditLogEntry]
    ) -> HistoryPage:
        """Page ``page`` of ``count`` entries, ``page_size`` a page (a page past the last is
        empty; there is always at least one page)."""
        total_pages = max(1, math.ceil(count / page_size))
        has_next = page < total_pages
        has_previous = page > 1
        return cls(
            count=count,
            total_pages=total_pages,
            current_page=page,
            has_previous=has_previous,
            has_next=has_next,
            previous_page=page - 1 if has_previous else None,
            next_page=page + 1 if has_next else None,
            results=results,
        )


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


#: The ``audit_log`` columns an entry shows (``created_by`` repeats ``user_id``).
ENTRY_COLUMNS = tuple(name for name in AuditLogEntry.model_fields if name != "created_by")
