"""Stored JSON documents (the states, ``changed_fields``, ``extra``): one encoder for all.

orjson's where it is installed (the ``fast`` extra), else the standard library's; the few values
they write differently are listed in docs/serialization.md. A document holding text that not
every database stores (NUL, an unpaired surrogate: PostgreSQL's jsonb refuses both) is written
with that text escaped by :func:`auditlog.serialize.storable`; a glance at the encoded text tells
when that can be needed, so ordinary documents pay one substring search.

Reading them back, :func:`readable` selects a column so that text that is not JSON (a row
written by something else, on SQLite or MariaDB, which keep JSON as text) reaches the reader as
:class:`Unreadable` instead of failing the whole query.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from .serialize import encode_value, storable

__all__ = ["Unreadable", "dumps", "readable", "stdlib_dumps"]

#: One encoder for every document: ``json.dumps`` with options builds a new one per call.
stdlib_dumps = json.JSONEncoder(default=encode_value, separators=(",", ":")).encode


def _orjson() -> Callable[[Any], str] | None:
    """orjson's encoder where it is installed, falling back to the standard library for what
    orjson refuses: integers beyond 64 bits, unpaired surrogates, nesting deeper than 254. Other
    types go to ``encode_value`` on both, as do datetimes and dataclasses."""
    try:
        import orjson
    except ImportError:
        return None
    encode, refused = orjson.dumps, orjson.JSONEncodeError
    options = (
        orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    )

    def orjson_dumps(value: Any) -> str:
        try:
            return encode(value, default=encode_value, option=options).decode()
        except refused:
            return stdlib_dumps(value)

    return orjson_dumps


#: The encoder documents are written with.
encoder: Callable[[Any], str] = _orjson() or stdlib_dumps


def dumps(value: Any) -> str:
    """``value`` as JSON text that every supported database stores as it is."""
    text = encoder(value)
    if "\\u0000" in text or "\\ud" in text:  # maybe NUL or a surrogate (or an astral escape)
        escaped = storable(value)
        if escaped is not value:
            text = encoder(escaped)
    return text


@dataclass(frozen=True)
class Unreadable:
    """A stored document that is not JSON, as read: its text and why it does not parse."""

    text: str
    error: str


class _Tolerant(sa.types.TypeDecorator[Any]):
    """A JSON column read as text and parsed here: what does not parse becomes
    :class:`Unreadable`. PostgreSQL's ``jsonb``, which holds nothing else, is read as usual."""

    impl = sa.types.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.types.Text())

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return value
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            return value
        loads = getattr(dialect, "_json_deserializer", None) or json.loads  # the engine's own
        try:
            return loads(value)
        except ValueError as exc:
            return Unreadable(value, str(exc))


def readable(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``column`` (a JSON column) selected under its own name so that each row's document is
    parsed on its own: one that is not JSON reads as :class:`Unreadable`."""
    return sa.type_coerce(column, _Tolerant()).label(getattr(column, "name", None))
