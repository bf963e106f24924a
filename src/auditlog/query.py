"""``query_history``: the seed's ``GET /history/`` as a library call.

Arguments are validated once, at the edge, by :class:`HistoryQuery` (pydantic); each filter is a
small function from a validated query to a ``WHERE`` clause, so the session stays out of them.
Results are newest first: ``timestamp`` then ``id`` descending, which the indexes serve.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, Session

from .exceptions import InvalidQueryError
from .models import ACTION_TYPES, AuditLog, ContentType
from .schemas import AuditLogEntry, HistoryPage
from .serialize import encode_value

__all__ = ["MAX_PAGE_SIZE", "HistoryQuery", "query_history", "query_history_async"]

MAX_PAGE_SIZE = 1000
_table = AuditLog.__table__
_ENTRY_COLUMNS = [
    _table.c[name]
    for name in (
        "id", "tenant_id", "user_id", "action_type", "timestamp", "ip_address", "user_agent",
        "object_id", "before_state", "after_state", "content_type",
    )
]


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list, tuple, set)):
        return value  # left for pydantic to reject with a clear message
    return str(value)


class HistoryQuery(BaseModel):
    """The validated arguments of :func:`query_history`."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    tenant_id: str | None = None
    user_id: str | None = None
    ip_address: IPv4Address | IPv6Address | None = None
    action_type: tuple[str, ...] | None = None
    object_id: str | None = None
    content_type: int | str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    page: int = Field(default=1, ge=1, strict=False)
    page_size: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("tenant_id", "user_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return _as_text(value)

    @field_validator("ip_address", mode="before")
    @classmethod
    def _strip_ip(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("action_type", mode="before")
    @classmethod
    def _split_actions(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ValueError("expected an action type, a list of them, or a comma-separated string")
        parts = [str(v).strip().lower() for v in value if str(v).strip()]
        unknown = [p for p in parts if p not in ACTION_TYPES]
        if unknown:
            raise ValueError(f"unknown action type {unknown[0]!r}; use {', '.join(ACTION_TYPES)}")
        return tuple(dict.fromkeys(parts)) or None

    @field_validator("object_id", mode="before")
    @classmethod
    def _object_id_as_text(cls, value: Any) -> Any:
        if isinstance(value, (tuple, list)):  # a composite key, as entries store it
            return json.dumps([encode_value(v) for v in value], separators=(",", ":"))
        return _as_text(value)

    @field_validator("content_type", mode="before")
    @classmethod
    def _content_type_name(cls, value: Any) -> Any:
        if isinstance(value, type):  # a mapped class: its content type name
            return f"{value.__module__}.{value.__qualname__}"
        if isinstance(value, bool):
            raise ValueError("expected a content type id, a model name or a mapped class")
        return value

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)  # naive times are UTC, as stored
        return value

    @classmethod
    def parse(cls, **arguments: Any) -> HistoryQuery:
        """Validate, raising :class:`InvalidQueryError` that names the first bad argument."""
        try:
            return cls(**arguments)
        except ValidationError as exc:
            error = exc.errors()[0]
            argument = ".".join(str(part) for part in error["loc"][:1]) or "arguments"
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown argument"
            raise InvalidQueryError(argument, f"{message} (got {error.get('input')!r})") from None


# --- filters: one small function per argument ---------------------------------------------------

Filter = Callable[[HistoryQuery], "sa.ColumnElement[bool] | None"]


def _by_tenant(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    return None if q.tenant_id is None else _table.c.tenant_id == q.tenant_id


def _by_user(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    return None if q.user_id is None else _table.c.user_id == q.user_id


def _by_ip(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    return None if q.ip_address is None else _table.c.ip_address == str(q.ip_address)


def _by_action(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    if not q.action_type:
        return None
    if len(q.action_type) == 1:
        return _table.c.action_type == q.action_type[0]
    return _table.c.action_type.in_(q.action_type)


def _by_object(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    return None if q.object_id is None else _table.c.object_id == q.object_id


def _by_content_type(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    if q.content_type is None:
        return None
    if isinstance(q.content_type, int):
        return _table.c.content_type == q.content_type
    ids = sa.select(ContentType.id).where(ContentType.name == q.content_type).scalar_subquery()
    return _table.c.content_type == ids


def _since(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    return None if q.since is None else _table.c.timestamp >= q.since


def _until(q: HistoryQuery) -> sa.ColumnElement[bool] | None:
    return None if q.until is None else _table.c.timestamp < q.until


FILTERS: Sequence[Filter] = (
    _by_tenant, _by_user, _by_ip, _by_action, _by_object, _by_content_type, _since, _until,
)


def conditions(q: HistoryQuery) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of a validated query (AND-combined)."""
    return [c for c in (f(q) for f in FILTERS) if c is not None]


def _page(session: Session, q: HistoryQuery) -> HistoryPage:
    where = conditions(q)
    count = session.execute(sa.select(sa.func.count()).select_from(_table).where(*where)).scalar_one()
    rows = session.execute(
        sa.select(*_ENTRY_COLUMNS)
        .where(*where)
        .order_by(_table.c.timestamp.desc(), _table.c.id.desc())
        .limit(q.page_size)
        .offset((q.page - 1) * q.page_size)
    ).mappings()
    total_pages = max(1, math.ceil(count / q.page_size))
    has_next = q.page < total_pages
    has_previous = q.page > 1
    return HistoryPage(
        count=count,
        total_pages=total_pages,
        current_page=q.page,
        has_previous=has_previous,
        has_next=has_next,
        previous_page=q.page - 1 if has_previous else None,
        next_page=q.page + 1 if has_next else None,
        results=[AuditLogEntry.model_validate(dict(row)) for row in rows],
    )


def query_history(
    session: Session,
    *,
    tenant_id: Any = None,
    user_id: Any = None,
    ip_address: str | None = None,
    action_type: str | Sequence[str] | None = None,
    object_id: Any = None,
    content_type: int | str | type | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    page: int = 1,
    page_size: int = 20,
) -> HistoryPage:
    """One page of audit entries matching every given filter, newest first.

    ``action_type`` takes one value, a list, or a comma-separated string; ``content_type`` an id,
    a model name or the mapped class; ``object_id`` the stored text, or a tuple for a composite key;
    ``since`` (inclusive) and ``until`` (exclusive) bound the timestamp. Raises
    :class:`~auditlog.InvalidQueryError` (a ``ValueError``) naming a bad argument.
    """
    q = HistoryQuery.parse(
        tenant_id=tenant_id, user_id=user_id, ip_address=ip_address, action_type=action_type,
        object_id=object_id, content_type=content_type, since=since, until=until, page=page,
        page_size=page_size,
    )
    return _page(session, q)


async def query_history_async(session: AsyncSession, **arguments: Any) -> HistoryPage:
    """:func:`query_history` for an ``AsyncSession`` (same arguments)."""
    q = HistoryQuery.parse(**arguments)
    return await session.run_sync(_page, q)
