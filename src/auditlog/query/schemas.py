"""Pydantic models of the ``GET /history/`` page and of one entry, field for field."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)

from ..models import ActionType

__all__ = ["ENTRY_COLUMNS", "EXAMPLE_PAGE", "AuditLogEntry", "CursorPage", "HistoryPage"]

_log = logging.getLogger("auditlog.query")

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
    model: str | None = Field(
        default=None, description="The object's model, `module.Class` (its content type's name)."
    )
    model_label: str | None = Field(default=None, description="The model's class name.")
    changed_fields: list[str] | None = Field(
        default=None, description="The recorded attributes an update changed (null otherwise)."
    )
    diff: dict[str, list[Any]] | None = Field(
        default=None, description="An update's changes: `{attribute: [before, after]}`."
    )
    transaction_id: str | None = Field(
        default=None, description="Shared by every entry of one database transaction."
    )
    extra: dict[str, Any] | None = Field(
        default=None, description="The extra values of the context the change was made in."
    )

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """What an entry shows beyond its columns: ``created_by`` (the name the endpoint's schema
        gives the actor, the same as ``user_id``), the model's label and an update's diff."""
        if not isinstance(data, dict):
            data = {name: getattr(data, name, None) for name in (*ENTRY_COLUMNS, "model")}
        data = dict(data)
        if data.get("created_by") is None:
            data["created_by"] = data.get("user_id")
        model = data.get("model")
        if isinstance(model, str) and data.get("model_label") is None:
            data["model_label"] = model.rpartition(".")[2]
        fields = data.get("changed_fields")
        before, after = data.get("before_state"), data.get("after_state")
        updated = isinstance(before, dict) and isinstance(after, dict)
        if data.get("diff") is None and isinstance(fields, list) and updated:
            data["diff"] = {f: [before.get(f), after.get(f)] for f in fields}
        return data

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuditLogEntry | None:
        """The entry of an ``audit_log`` row, read as well as it can be.

        A row auditlog did not write (a trigger's, a migration's) may hold a state that is not a
        JSON object, a missing user agent or an unknown action: such values are shown in the
        nearest valid form (a state as ``{"value": ...}``, ``""``, ``0``) with a logged warning,
        and a row that still cannot be read is left out of the page, with a warning, rather
        than failing it.
        """
        data = dict(row)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problem = exc.errors()[0]
        repaired = dict(data)
        for key in ("before_state", "after_state"):
            value = repaired.get(key)
            if value is not None and not isinstance(value, dict):
                repaired[key] = {"value": value}
        for key, empty in (("user_agent", ""), ("object_id", ""), ("content_type", 0)):
            if repaired.get(key) is None:
                repaired[key] = empty
        action = repaired.get("action_type")
        if isinstance(action, str) and action.strip().lower() in get_args(ActionType):
            repaired["action_type"] = action.strip().lower()
        try:
            entry = cls.model_validate(repaired)
        except ValidationError as exc:
            _log.warning("audit_log row %r cannot be read and is left out: %s", data.get("id"), exc)
            return None
        _log.warning(
            "audit_log row %r is not in the form auditlog writes (%s: %s); shown repaired",
            data.get("id"),
            ".".join(str(part) for part in problem["loc"]),
            problem["msg"],
        )
        return entry

    @field_serializer("timestamp", when_used="json")
    def _utc_timestamp(self, value: dt.datetime) -> str:
        """UTC, six fraction digits and ``Z``: ``2025-03-26T13:53:02.869449Z``."""
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HistoryPage(BaseModel):
    """One page of history, newest first, with page-number pagination fields."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"example": EXAMPLE_PAGE})

    count: int = Field(
        description="Entries matching the filters, on all pages: exact up to a limit (10,000 by "
        "default), the database's estimate past it (see `count_exact`)."
    )
    total_pages: int
    current_page: int
    has_previous: bool
    has_next: bool
    previous_page: int | None
    next_page: int | None
    results: list[AuditLogEntry]
    next_cursor: str | None = Field(
        default=None,
        description="Where the next page starts, for reading on with `cursor` (null on the last).",
    )
    count_exact: bool = Field(
        default=True,
        description="Whether `count` (and so `total_pages`) is exact; false when it is the "
        "database's estimate. `has_next` is always exact.",
    )

    @classmethod
    def numbered(
        cls,
        count: int,
        page: int,
        page_size: int,
        results: list[AuditLogEntry],
        next_cursor: str | None = None,
        *,
        exact: bool = True,
        more: bool | None = None,
    ) -> HistoryPage:
        """Page ``page`` of ``count`` entries, ``page_size`` a page (a page past the last is
        empty; there is always at least one page). ``more`` says whether a page follows when
        ``count`` is an estimate (``exact`` false)."""
        total_pages = max(1, math.ceil(count / page_size))
        has_next = page < total_pages if more is None else more
        if not exact and has_next:
            total_pages = max(total_pages, page + 1)
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
            next_cursor=next_cursor if has_next else None,
            count_exact=exact,
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


#: The ``audit_log`` columns an entry shows (the other fields are derived from them, or, for
#: ``model``, from the entry's content type).
ENTRY_COLUMNS = tuple(
    name
    for name in AuditLogEntry.model_fields
    if name not in {"created_by", "model", "model_label", "diff"}
)
