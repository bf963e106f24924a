"""The arguments of a history query, validated once at the edge (pydantic).

:class:`HistoryFilters` holds the filters both paging modes share; :class:`HistoryQuery` adds page
numbers, :class:`CursorQuery` a cursor. ``parse(**arguments)`` raises
:class:`~auditlog.InvalidQueryError` naming the first bad argument. The field descriptions are
the endpoint's parameter documentation too (its OpenAPI parameters are built from this schema).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, TypedDict, TypeVar

import sqlalchemy as sa
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy.orm import Mapper

from ..context import ip_text
from ..exceptions import ContextError, InvalidQueryError
from ..models import ACTION_TYPES, MAX_ID, ULID_PATTERN, ActionType, ulid_hex, utc_bound
from ..registry import model_name
from ..serialize import object_id_of
from .counts import COUNT_LIMIT
from .cursor import Cursor

__all__ = [
    "MAX_PAGE_SIZE",
    "CursorArguments",
    "CursorQuery",
    "FilterArguments",
    "HistoryFilters",
    "HistoryQuery",
    "PageArguments",
]

#: The largest page a query returns.
MAX_PAGE_SIZE = 1000
#: Text that holds no NUL character (no database column can store one), and an address; as
#: their JSON Schema says (validation is done by the validators below, with clearer messages).
_Text = Annotated[str, WithJsonSchema({"type": "string", "pattern": "^[^\\x00]*$"})]
_EntryId = Annotated[
    str,
    WithJsonSchema({"type": "string", "pattern": f"^{ULID_PATTERN}$"}),
]
_Address = Annotated[
    str, WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
]


class FilterArguments(TypedDict, total=False):
    """The keyword arguments of the filters (see :class:`HistoryFilters`)."""

    tenant_id: Any
    user_id: Any
    ip_address: str | IPv4Address | IPv6Address | None
    action_type: str | Sequence[str] | None
    object_id: Any
    content_type: int | str | type | None
    since: dt.datetime | None
    until: dt.datetime | None


class PageArguments(FilterArguments, total=False):
    """The keyword arguments of ``query_history``."""

    page: int
    page_size: int
    count_limit: int | None


class CursorArguments(FilterArguments, total=False):
    """The keyword arguments of ``query_history_cursor``."""

    cursor: str | Cursor | None
    page_size: int


def _as_text(value: Any) -> Any:
    """Ids may be given as any scalar with a meaningful ``str()`` (UUIDs, ints), as in the context."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list, tuple, set, bytes)):
        return value  # left for pydantic to reject with a clear message
    return str(value)


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected an integer, not a boolean")
    return value


_NOT_BOOL = BeforeValidator(_no_bool)  # Python would take True for 1
_PageSize = Annotated[
    int,
    Field(ge=1, le=MAX_PAGE_SIZE, description=f"Entries per page, 1 to {MAX_PAGE_SIZE}."),
    _NOT_BOOL,
]
_Q = TypeVar("_Q", bound="HistoryFilters")


class HistoryFilters(BaseModel):
    """The filters both paging modes share, validated; every given one must match (AND)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    tenant_id: _Text | None = Field(default=None, description="Only entries of this tenant.")
    user_id: _Text | None = Field(default=None, description="Only entries by this user.")
    ip_address: _Address | None = Field(
        default=None, description="Only entries from this IPv4 or IPv6 address."
    )
    action_type: tuple[ActionType, ...] | None = Field(
        default=None,
        description="Only these actions: one value, repeated, or comma-separated (`create,update`).",
    )
    object_id: _Text | None = Field(
        default=None, description="Only entries about the object with this primary key."
    )
    content_type: Annotated[int, Field(ge=0, le=MAX_ID)] | str | None = Field(
        default=None,
        description="Only entries about objects of this model: its `content_type` id, or its "
        "name (`module.Class`).",
    )
    transaction_id: _EntryId | None = Field(
        default=None, description="Only entries of this database transaction."
    )
    since: dt.datetime | None = Field(
        default=None, description="Only entries at or after this time (ISO 8601; UTC when naive)."
    )
    until: dt.datetime | None = Field(
        default=None, description="Only entries before this time (ISO 8601; UTC when naive)."
    )

    @field_validator("tenant_id", "user_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return _as_text(value)

    @field_validator("ip_address", mode="before")
    @classmethod
    def _parse_ip(cls, value: Any) -> Any:
        """Normalised exactly as ``audit_context`` stores it (``2001:DB8::0001``, IPv4-mapped)."""
        if value is None:
            return None
        if not isinstance(value, (str, IPv4Address, IPv6Address)):
            raise ValueError(f"expected an IP address string, got {type(value).__name__}")
        if not str(value).strip():
            return None
        try:
            return ip_text(value)
        except ContextError:
            raise ValueError("not a valid IPv4 or IPv6 address") from None

    @field_validator("tenant_id", "user_id", "object_id")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character")
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
    def _object_id_as_stored(cls, value: Any) -> Any:
        """The text capture stores: a scalar key encoded, a composite key as a compact JSON array."""
        if value is None or isinstance(value, (bool, dict, set, bytes)):
            return value  # rejected by pydantic
        return object_id_of(value)

    @field_validator("content_type", mode="before")
    @classmethod
    def _content_type_id_or_name(cls, value: Any) -> Any:
        """An id, a model's content type name (``module.Class``), or the mapped class itself."""
        if isinstance(value, type):
            if not isinstance(sa.inspect(value, raiseerr=False), Mapper):
                raise ValueError(f"{value.__qualname__} is not a mapped class")
            return model_name(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)  # "18" from a query string is the id 18
        return _no_bool(value)

    @field_validator("transaction_id", mode="before")
    @classmethod
    def _a_ulid(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            ulid_hex(value)
        except (ValueError, TypeError):
            raise ValueError("not a transaction id (a ULID)") from None
        return str(value).upper()

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else utc_bound(value)  # naive times are UTC, as stored

    @classmethod
    def parse(cls: type[_Q], **arguments: Any) -> _Q:
        """Validate, raising :class:`InvalidQueryError` that names the first bad argument."""
        try:
            return cls(**arguments)
        except ValidationError as exc:
            error = exc.errors()[0]
            argument = ".".join(str(part) for part in error["loc"][:1]) or "arguments"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown argument"
            raise InvalidQueryError(argument, f"{message} (got {error.get('input')!r})") from None


class HistoryQuery(HistoryFilters):
    """The validated arguments of ``query_history`` (page-number mode)."""

    page: Annotated[int, Field(ge=1, le=MAX_ID), _NOT_BOOL] = Field(
        default=1, description="Page number, from 1."
    )
    page_size: _PageSize = 20
    count_limit: Annotated[int, Field(ge=0), _NOT_BOOL] | None = Field(
        default=COUNT_LIMIT,
        description="Entries counted exactly; past them `count` is the database's estimate "
        "(`count_exact` false). None counts exactly, whatever it costs.",
    )


class CursorQuery(HistoryFilters):
    """The validated arguments of ``query_history_cursor`` (keyset mode)."""

    cursor: Annotated[Cursor, WithJsonSchema({"type": "string"})] | None = Field(
        default=None,
        description="Read on from this cursor: a page's `next_cursor` (older entries) or "
        "`previous_cursor` (newer ones). Each page then costs the same however deep it is.",
    )
    page_size: _PageSize = 20

    @field_validator("cursor", mode="before")
    @classmethod
    def _decode_cursor(cls, value: Any) -> Any:
        if value is None or isinstance(value, Cursor):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected a cursor string, got {type(value).__name__}")
        return Cursor.decode(value.strip()) if value.strip() else None
