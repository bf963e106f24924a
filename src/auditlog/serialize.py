"""Column values to JSON and back, losslessly: the encoding documented in docs/serialization.md.

Encoding is chosen once per column (see :func:`encoder_for`) and falls back to the value's own type,
so a flush pays one function call per recorded attribute. :func:`decode_value` reverses it from the
column type. Unknown types are stored as ``str(value)`` rather than breaking a flush; register an
encoder/decoder pair with :func:`register_type` to make them reversible.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import ipaddress
import json
import math
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.orm import Mapper
from sqlalchemy.types import TypeEngine

__all__ = [
    "MASKED",
    "decode_state",
    "decode_value",
    "dumps",
    "encode_value",
    "encoder_for",
    "object_id_text",
    "register_type",
]

#: What a masked attribute's value is replaced with, on both sides of an entry.
MASKED = "********"

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]

_TIMEDELTA = TypeAdapter(dt.timedelta)
_UTC = dt.timezone.utc


def _identity(value: Any) -> Any:
    return value


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _datetime(value: dt.datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        return value.isoformat()
    if offset:
        value = value.astimezone(_UTC)
    return dt.datetime.isoformat(value)[:-6] + "Z"  # "+00:00" becomes "Z"


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): encode_value(v) for k, v in value.items()}


def _sequence(value: Any) -> list[Any]:
    return [encode_value(v) for v in value]


def _range(value: Any) -> dict[str, Any]:
    return {
        "lower": encode_value(value.lower),
        "upper": encode_value(value.upper),
        "bounds": value.bounds,
        "empty": value.empty,
    }


_BY_TYPE: dict[type, Encoder] = {
    type(None): _identity,
    bool: _identity,
    int: _identity,
    str: _identity,
    float: _float,
    Decimal: str,
    dt.datetime: _datetime,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    dt.timedelta: lambda v: _TIMEDELTA.dump_python(v, mode="json"),
    uuid.UUID: str,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    dict: _mapping,
    list: _sequence,
    tuple: _sequence,
}
# Checked in order for subclasses and types seen for the first time.
_BY_BASE: list[tuple[type, Encoder]] = [
    (enum.Enum, lambda v: v.name),
    (Mapping, _mapping),
    (list, _sequence),
    (tuple, _sequence),
    ((set, frozenset), lambda v: sorted((encode_value(x) for x in v), key=repr)),  # type: ignore[list-item]
    (
        (
            ipaddress.IPv4Address,
            ipaddress.IPv6Address,
            ipaddress.IPv4Interface,  # type: ignore[list-item]
            ipaddress.IPv6Interface,
            ipaddress.IPv4Network,
            ipaddress.IPv6Network,
        ),
        str,
    ),
    (int, int),
    (str, str),
    (float, _float),
    (dt.datetime, _datetime),
    (dt.date, dt.date.isoformat),
]
_DECODERS: dict[type, Decoder] = {}


def register_type(python_type: type, *, encode: Encoder, decode: Decoder) -> None:
    """Teach auditlog a value type: ``encode`` makes it JSON, ``decode`` (by column type) reverses it."""
    _BY_TYPE[python_type] = encode
    _NATIVE.discard(python_type)
    _DECODERS[python_type] = decode


def _fallback(value: Any) -> Any:
    try:
        from sqlalchemy.dialects.postgresql import Range
    except ImportError:  # pragma: no cover - always present in SQLAlchemy 2
        Range = ()  # type: ignore[assignment,misc]
    if isinstance(value, Range):
        return _range(value)
    return str(value)


#: Types JSON holds as they are (``bool`` is a subclass of ``int``, so it is listed by itself).
_NATIVE: set[type] = {str, int, bool, type(None)}


def encode_value(value: Any) -> Any:
    """Encode one Python value to a JSON-compatible value (dispatch on the value's type)."""
    if type(value) in _NATIVE:
        return value
    encoder = _BY_TYPE.get(type(value))
    if encoder is None:
        encoder = _fallback
        for base, fn in _BY_BASE:
            if isinstance(value, base):
                encoder = fn
                break
        if encoder is not _fallback:
            _BY_TYPE[type(value)] = encoder
    return encoder(value)


def _naive_is_utc(value: Any) -> Any:
    if type(value) is dt.datetime:
        zone = value.tzinfo
        if zone is None:
            return value.isoformat() + "Z"
        if zone is _UTC and _BY_TYPE[dt.datetime] is _datetime:  # not when one is registered
            return value.isoformat()[:-6] + "Z"
    return encode_value(value)


def encoder_for(column_type: TypeEngine[Any]) -> Encoder:
    """The encoder for one column: the value's own type, adjusted where the column says more.

    - ``Numeric(scale=n)`` (not Float): decimals are shown with the column's ``n`` places, as stored.
    - ``DateTime(timezone=True)``: SQLite and MariaDB hand back naive values; they are UTC.
    """
    if isinstance(column_type, sa.DateTime) and column_type.timezone:
        return _naive_is_utc
    if isinstance(column_type, sa.JSON):
        return _identity  # already JSON: stored as given, serialized once, with the entry
    if (
        isinstance(column_type, sa.Numeric)
        and not isinstance(column_type, sa.Float)
        and column_type.asdecimal
        and column_type.scale is not None
    ):
        exponent = Decimal(1).scaleb(-column_type.scale)

        def _quantized(value: Any) -> Any:
            if type(value) is Decimal and value.is_finite():
                try:
                    return str(value.quantize(exponent))
                except ArithmeticError:
                    return str(value)
            return encode_value(value)

        return _quantized
    return encode_value


def _parse_datetime(value: str) -> dt.datetime:
    if value.endswith("Z"):
        return dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=_UTC)
    return dt.datetime.fromisoformat(value)


def decode_value(column_type: TypeEngine[Any], value: Any) -> Any:
    """Turn an encoded value back into the Python value the column holds."""
    if value is None:
        return None
    if isinstance(column_type, sa.Interval):  # a TypeDecorator over DateTime on most backends
        return _TIMEDELTA.validate_python(value)
    if isinstance(column_type, sa.types.TypeDecorator):
        try:
            python_type: type | None = column_type.python_type
        except NotImplementedError:
            python_type = None
        if python_type in _DECODERS:
            return _DECODERS[python_type](value)
        column_type = column_type.impl_instance
    if isinstance(column_type, sa.JSON):
        return value
    if isinstance(column_type, sa.Enum) and column_type.enum_class is not None:
        return column_type.enum_class[value]
    if isinstance(column_type, sa.ARRAY):
        return [decode_value(column_type.item_type, v) for v in value]
    if isinstance(column_type, sa.Float):
        return float(value)
    if isinstance(column_type, sa.Numeric):
        return Decimal(value) if column_type.asdecimal else float(value)
    if isinstance(column_type, sa.DateTime):
        return _parse_datetime(value)
    if isinstance(column_type, sa.Date):
        return dt.date.fromisoformat(value)
    if isinstance(column_type, sa.Time):
        return dt.time.fromisoformat(value)
    if isinstance(column_type, sa.Uuid):
        return uuid.UUID(value) if column_type.as_uuid else value
    if isinstance(column_type, sa.LargeBinary):
        return base64.b64decode(value)
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        return value
    if python_type in _DECODERS:
        return _DECODERS[python_type](value)
    if isinstance(value, dict) and {"lower", "upper", "bounds"} <= value.keys():
        from sqlalchemy.dialects.postgresql import Range

        element = _RANGE_ELEMENTS.get(type(column_type).__name__, sa.Integer())
        return Range(
            decode_value(element, value["lower"]),
            decode_value(element, value["upper"]),
            bounds=value["bounds"],
            empty=value["empty"],
        )
    return value


#: PostgreSQL range types and the type of their bounds.
_RANGE_ELEMENTS: dict[str, TypeEngine[Any]] = {
    "INT4RANGE": sa.Integer(),
    "INT8RANGE": sa.BigInteger(),
    "NUMRANGE": sa.Numeric(),
    "DATERANGE": sa.Date(),
    "TSRANGE": sa.DateTime(),
    "TSTZRANGE": sa.DateTime(timezone=True),
}


def decode_state(model: type, state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Decode a stored ``before_state``/``after_state`` back to the model's Python values.

    Keys that are not column attributes of ``model`` (and masked values) are returned unchanged.
    """
    if state is None:
        return None
    mapper: Mapper[Any] = sa.inspect(model)
    columns = mapper.columns
    out: dict[str, Any] = {}
    for key, value in state.items():
        column = columns.get(key)
        out[key] = value if column is None or value == MASKED else decode_value(column.type, value)
    return out


def object_id_text(pk: tuple[Any, ...]) -> str:
    """A primary key as the ``object_id`` text: a single value encoded (an integer or a string
    as it is), a composite key as a compact JSON array of the encoded parts."""
    if len(pk) == 1:
        value = pk[0]
        if type(value) is int:
            return str(value)
        value = encode_value(value)
        return value if isinstance(value, str) else json.dumps(value)
    return json.dumps([encode_value(v) for v in pk], separators=(",", ":"))


# --- JSON documents -----------------------------------------------------------------------------

#: One encoder for every document: ``json.dumps`` with options builds a new one per call.
stdlib_dumps = json.JSONEncoder(default=encode_value, separators=(",", ":")).encode


def _orjson() -> Callable[[Any], str] | None:
    """orjson's encoder where it is installed (the ``fast`` extra), falling back to the standard
    library for what orjson refuses: integers beyond 64 bits, unpaired surrogates, nesting
    deeper than 254. Other types go to ``encode_value`` on both, as do datetimes and dataclasses."""
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


#: The encoder of every stored JSON document: orjson's where it is installed, else the standard
#: library's (see docs/serialization.md for the few values they write differently).
dumps: Callable[[Any], str] = _orjson() or stdlib_dumps
