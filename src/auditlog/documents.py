"""Stored JSON documents (the states, ``changed_fields``, ``extra``): one encoder for all.

orjson's where it is installed (the ``fast`` extra), else the standard library's; the few values
they write differently are listed in docs/serialization.md. A document holding text that not
every database stores (NUL, an unpaired surrogate: PostgreSQL's jsonb refuses both) is written
with that text escaped by :func:`auditlog.serialize.storable`; a glance at the encoded text tells
when that can be needed, so ordinary documents pay one substring search.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .serialize import encode_value, storable

__all__ = ["dumps", "stdlib_dumps"]

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
