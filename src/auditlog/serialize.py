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
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.orm import Mapper
from sqlalchemy.types import TypeEngine

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

__all__ = [
    "MASKED",
    "decode_state",
    "decode_value",
    "encode_value",
    "encoder_for",
    "identity_of_object_id",
    "object_id_of",
    "object_id_text",
    "register_type",
    "restored",
    "storable",
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


def _text(value: Any) -> Any:
    """A string column stores a ``str`` subclass (a ``StrEnum`` member) as its text."""
    if type(value) is str or value is None:
        return value
    return str.__str__(value) if isinstance(value, str) else encode_value(value)


def _date(value: Any) -> Any:
    """A date column stores the date of a datetime."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    return encode_value(value)


def _boolean(value: Any) -> Any:
    """A boolean column stores 0 and 1 as false and true."""
    if value is True or value is False or value is None:
        return value
    return bool(value) if type(value) is int and value in (0, 1) else encode_value(value)


def _stored_enum(column_type: sa.Enum) -> Encoder:
    """What an Enum column stores for a member: its name, or its value with ``values_callable``."""
    db_value = getattr(column_type, "_db_value_for_elem", None)

    def encode(value: Any) -> Any:
        if db_value is not None and value is not None:
            try:
                return encode_value(db_value(value))
            except (LookupError, ValueError, TypeError):
                pass
        return encode_value(value)

    return encode


_AS_STORED: tuple[tuple[type[TypeEngine[Any]], tuple[type, ...]], ...] = (
    (sa.Boolean, (bool, int)),  # 0 and 1 are false and true (the encoder says so)
    (sa.Integer, (int,)),
    (sa.String, (str,)),
    (sa.DateTime, (dt.datetime,)),
    (sa.Date, (dt.date,)),  # a datetime is stored as its date (the encoder says so)
    (sa.Time, (dt.time,)),
    (sa.LargeBinary, (bytes, bytearray, memoryview)),
)


#: What a column stores values as its encoder gives them: their Python types, and for a
#: ``Numeric`` with a scale, how many places a ``Decimal`` may have (more are rounded).
StoredForm = tuple[tuple[type, ...], int | None]


def stored_form(column_type: TypeEngine[Any]) -> StoredForm | None:
    """What a column stores values as its encoder gives them. A value of another type, or a
    decimal with more places than the column's scale, is converted by the database in its own
    way (``"30"`` in an integer column is ``30``; ``1.005`` in a ``Numeric(10, 2)`` is
    ``1.01`` on PostgreSQL and ``1.00`` on SQLite), so its entry reads it back. None for columns
    whose values are not checked: a TypeDecorator converts values itself, and JSON, Enum, array
    and other types take many."""
    if isinstance(column_type, (sa.types.TypeDecorator, sa.Enum, sa.JSON, sa.ARRAY)):
        return None
    if isinstance(column_type, sa.Float):  # an integer is exact in either
        return ((Decimal, int) if column_type.asdecimal else (float, int)), None
    if isinstance(column_type, sa.Numeric):  # a float as well is rounded to the scale
        return ((Decimal, int) if column_type.asdecimal else (float, int)), column_type.scale
    if isinstance(column_type, sa.Uuid):
        return ((uuid.UUID,) if column_type.as_uuid else (str,)), None
    for kind, types in _AS_STORED:
        if isinstance(column_type, kind):
            return types, None
    return None


#: How a temporal column keeps a value on one database: the step of microseconds it keeps
#: (1: all six digits; 1,000,000: whole seconds), whether it keeps an aware value's offset
#: (else it stores the wall-clock time and drops the offset), and whether the column is naive.
TimeForm = tuple[int, bool, bool]


def time_form(column_type: TypeEngine[Any], dialect: Dialect) -> TimeForm | None:
    """How ``column_type`` (a ``DateTime`` or ``Time``) keeps values on ``dialect``; None when
    it keeps every datetime or time as the application holds it, or the database is not one
    auditlog knows. MariaDB and MySQL keep the fractional seconds the column declares (none
    for a plain ``DATETIME``), PostgreSQL those of its precision (six by default) and its
    ``timestamptz`` an aware value's instant; SQLite keeps six digits and drops the offset."""
    if isinstance(column_type, sa.types.TypeDecorator) or not isinstance(
        column_type, (sa.DateTime, sa.Time)
    ):
        return None
    variants = column_type._variant_mapping  # with_variant(): the type this database gets
    chosen = variants.get(dialect.name) or (
        variants.get("mysql") if dialect.name == "mariadb" else None
    )
    declared = chosen if chosen is not None else column_type
    if dialect.name in ("mysql", "mariadb"):
        digits = getattr(declared, "fsp", None) or 0
    elif dialect.name == "postgresql":
        precision = getattr(declared, "precision", None)
        digits = 6 if precision is None else precision
    elif dialect.name == "sqlite":
        digits = 6
    else:
        return None
    keeps_offset = (
        dialect.name == "postgresql"
        and isinstance(column_type, sa.DateTime)
        and bool(column_type.timezone)
    )
    step = 10 ** (6 - min(max(digits, 0), 6))
    if step == 1 and keeps_offset:
        return None
    return step, keeps_offset, not getattr(column_type, "timezone", False)


def kept_as_held(value: Any, form: TimeForm) -> bool:
    """Whether a datetime or time ``value`` is stored as held by a column of ``form``: no
    more fractional seconds than it keeps, and no offset it would drop (an aware value in a
    naive column is stored as its wall-clock time, or converted by the database's zone)."""
    step, keeps_offset, naive = form
    if step > 1 and value.microsecond % step:
        return False
    if value.tzinfo is None or keeps_offset:
        return True
    return not naive and not value.utcoffset()


def encoder_for(column_type: TypeEngine[Any]) -> Encoder:
    """The encoder for one column: the value as the column stores it, in its JSON form.

    The value an application assigns is not always what the row holds: a ``StrEnum`` member in a
    string column is stored as its text, a datetime in a date column as its date, ``1`` in a
    boolean column as true, an Enum member by name (or by value with ``values_callable``).

    - ``Numeric(scale=n)`` (not Float): decimals and integers are shown with the column's ``n``
      places, as stored; a ``Float`` column stores an integer as a float.
    - ``DateTime(timezone=True)``: SQLite and MariaDB hand back naive values; they are UTC.
    """
    if isinstance(column_type, sa.DateTime) and column_type.timezone:
        return _naive_is_utc
    if isinstance(column_type, sa.Enum):
        return _stored_enum(column_type) if column_type.enum_class is not None else _text
    if isinstance(column_type, sa.String):
        return _text
    if isinstance(column_type, sa.Date) and not isinstance(column_type, sa.DateTime):
        return _date
    if isinstance(column_type, sa.Boolean):
        return _boolean
    if isinstance(column_type, sa.JSON):
        return _identity  # already JSON: stored as given, serialized once, with the entry
    if isinstance(column_type, sa.Float) and not column_type.asdecimal:
        return _float_column
    if (
        isinstance(column_type, sa.Numeric)
        and not isinstance(column_type, sa.Float)
        and column_type.asdecimal
    ):
        if column_type.scale is None:
            return _decimal_column
        exponent = Decimal(1).scaleb(-column_type.scale)

        def _quantized(value: Any) -> Any:
            if type(value) is int:
                value = Decimal(value)
            if type(value) is Decimal and value.is_finite():
                try:
                    return str(value.quantize(exponent))
                except ArithmeticError:
                    return str(value)
            return encode_value(value)

        return _quantized
    return encode_value


def _float_column(value: Any) -> Any:
    """A float column stores an integer as a float: the nearest one past 2**53, as the database
    rounds it (single-precision columns round further, see the limitations)."""
    if type(value) is int:
        try:
            return _float(float(value))
        except OverflowError:  # beyond any float: the database refuses it
            return value
    return encode_value(value)


def _decimal_column(value: Any) -> Any:
    """A numeric column stores an integer as a decimal."""
    return str(value) if type(value) is int else encode_value(value)


def _parse_datetime(value: str) -> dt.datetime:
    if value.endswith("Z"):
        return dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=_UTC)
    return dt.datetime.fromisoformat(value)


def decode_value(column_type: TypeEngine[Any], value: Any) -> Any:
    """Turn an encoded value back into the Python value the column holds."""
    value = restored(value)
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
        found = getattr(column_type, "_object_value_for_elem", None)
        return found(value) if found is not None else column_type.enum_class[value]
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


# --- text a JSON document cannot hold everywhere -------------------------------------------------

#: NUL and unpaired surrogates: valid in Python strings, in JSON text and in SQLite's or MariaDB's
#: JSON, but refused by PostgreSQL's jsonb (and by many JSON tools).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: The key of the object that stands for such a string: its UTF-8 bytes (surrogates kept), base64.
TEXT_TAG = "$auditlog.text"
#: The key of the object that stands for a mapping with such a key: its items, as pairs.
ITEMS_TAG = "$auditlog.items"


def _storable_text(value: str) -> Any:
    if _UNSTORABLE.search(value) is None:
        return value
    return {TEXT_TAG: base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")}


def storable(value: Any) -> Any:
    """``value`` (encoded JSON) with every string holding NUL or an unpaired surrogate replaced by
    ``{"$auditlog.text": "<base64 of its UTF-8>"}`` (a mapping with such a key becomes
    ``{"$auditlog.items": [[key, value], ...]}``), so that every database stores it; ``value``
    itself when nothing needs it. :func:`restored` reverses it."""
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, dict):
        keys = [_storable_text(k) if isinstance(k, str) else k for k in value]
        items = [storable(v) for v in value.values()]
        if any(k is not o for k, o in zip(keys, value, strict=True)):
            return {ITEMS_TAG: [[k, v] for k, v in zip(keys, items, strict=True)]}
        if all(v is o for v, o in zip(items, value.values(), strict=True)):
            return value
        return dict(zip(value, items, strict=True))
    if isinstance(value, (list, tuple)):
        items = [storable(v) for v in value]
        return value if all(v is o for v, o in zip(items, value, strict=True)) else items
    return value


def restored(value: Any) -> Any:
    """The JSON value :func:`storable` was given."""
    if isinstance(value, dict):
        if len(value) == 1 and TEXT_TAG in value and isinstance(value[TEXT_TAG], str):
            return base64.b64decode(value[TEXT_TAG]).decode("utf-8", "surrogatepass")
        if len(value) == 1 and ITEMS_TAG in value and isinstance(value[ITEMS_TAG], list):
            return {restored(k): restored(v) for k, v in value[ITEMS_TAG]}
        return {k: restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restored(v) for v in value]
    return value


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


def object_id_of(value: Any) -> str:
    """The ``object_id`` text of a key as a caller gives it: the stored text as it is, a tuple
    (or list) as a composite key, any other value as a one-column key."""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        if not value:
            raise ValueError("a composite key needs at least one value")
        return object_id_text(tuple(value))
    return object_id_text((value,))


def identity_of_object_id(mapper: Mapper[Any], text: str) -> tuple[Any, ...]:
    """The primary key values an ``object_id`` stands for (the reverse of
    :func:`object_id_text`), decoded through the key columns' types."""
    columns = list(mapper.primary_key)
    parts: list[Any] = json.loads(text) if len(columns) > 1 else [text]
    if len(parts) != len(columns):
        raise ValueError(f"{text!r} is not a key of {mapper.class_.__name__}")
    key = []
    for column, part in zip(columns, parts, strict=True):
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = None
        if python_type is int and isinstance(part, str):
            part = int(part)
        key.append(decode_value(column.type, part))
    return tuple(key)


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
