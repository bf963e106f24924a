"""Every standard column type is stored as documented JSON and decodes back to the same value."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import ipaddress
import math
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import auditlog
from auditlog.serialize import decode_value, encode_value, encoder_for

from .helpers import entries
from .models import Status, TypeZoo

UTC = dt.timezone.utc


def zoo_values(backend: str) -> dict[str, Any]:
    """Values each backend stores exactly (SQLite keeps NUMERIC as a float; MariaDB and SQLite
    keep no time zone, so aware values are given in UTC there)."""
    aware_tz = dt.timezone(dt.timedelta(hours=5, minutes=30)) if backend == "postgresql" else UTC
    return {
        "big": 2**62,
        "small": -32768,
        "numeric": Decimal("123.4560000000")
        if backend == "sqlite"
        else Decimal("12345678901234567890.0123456789"),
        "flt": 0.5,
        "double": 0.1,
        "text": 'multi\nline "quoted" ✓',
        "unicode": "日本語 ünïcode",
        "flag": True,
        "day": dt.date(2024, 2, 29),
        "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        "aware": dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=aware_tz),
        "clock": dt.time(23, 59, 58, 999999),
        "span": dt.timedelta(days=-1, seconds=5),
        "uid": uuid.UUID("6da08401-b1f7-46ec-9013-2a9d7bc6185c"),
        "blob": bytes(range(256)),
        "status": Status.active,
        "doc": {"a": [1, 2.5, {"b": None}], "ü": True, "nested": {"list": []}},
    }


def expected_json(backend: str, values: dict[str, Any]) -> dict[str, Any]:
    aware = values["aware"].astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    return {
        "id": 1,
        "big": 4611686018427387904,
        "small": -32768,
        "numeric": "123.4560000000" if backend == "sqlite" else "12345678901234567890.0123456789",
        "flt": 0.5,
        "double": 0.1,
        "text": 'multi\nline "quoted" ✓',
        "unicode": "日本語 ünïcode",
        "flag": True,
        "day": "2024-02-29",
        "naive": "2024-01-02T03:04:05.678901",
        "aware": aware,
        "clock": "23:59:58.999999",
        "span": "-PT23H59M55S",
        "uid": "6da08401-b1f7-46ec-9013-2a9d7bc6185c",
        "blob": base64.b64encode(bytes(range(256))).decode(),
        "status": "active",
        "doc": {"a": [1, 2.5, {"b": None}], "ü": True, "nested": {"list": []}},
    }


def test_every_standard_type_round_trips(
    backend: str, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(TypeZoo)
    values = zoo_values(backend)
    with Session_.begin() as session:
        session.add(TypeZoo(id=1, **values))
    with Session_() as session:  # read back what the database stored, then delete it
        stored = session.get_one(TypeZoo, 1)
        stored_values = {key: getattr(stored, key) for key in values}
        if stored_values["aware"].tzinfo is None:  # SQLite and MariaDB keep no zone: it is UTC
            stored_values["aware"] = stored_values["aware"].replace(tzinfo=UTC)
        session.delete(stored)
        session.commit()
    create, delete = entries(engine)
    assert create.after_state == expected_json(backend, values)
    assert auditlog.decode_state(TypeZoo, create.after_state) == {"id": 1, **values}
    # the delete's before-state was encoded from the values loaded back from the database
    assert delete.before_state == expected_json(backend, values)
    assert auditlog.decode_state(TypeZoo, delete.before_state) == {"id": 1, **stored_values}


def test_nulls_round_trip(engine: Engine, Session_: sessionmaker[Session]) -> None:
    auditlog.register(TypeZoo)
    with Session_.begin() as session:
        session.add(TypeZoo(id=2))
    (create,) = entries(engine)
    assert create.after_state is not None
    assert set(create.after_state.values()) == {2, None}
    assert auditlog.decode_state(TypeZoo, create.after_state) == create.after_state


class PgBase(DeclarativeBase):
    pass


class PgOnly(PgBase):
    __tablename__ = "pg_only"

    id: Mapped[int] = mapped_column(primary_key=True)
    tags: Mapped[list[str]] = mapped_column(sa.ARRAY(sa.String))
    days: Mapped[list[dt.date]] = mapped_column(sa.ARRAY(sa.Date))
    address: Mapped[Any] = mapped_column(sa.dialects.postgresql.INET)
    period: Mapped[Any] = mapped_column(sa.dialects.postgresql.TSTZRANGE)
    seats: Mapped[Any] = mapped_column(sa.dialects.postgresql.INT4RANGE)


def test_postgresql_array_inet_and_ranges(
    backend: str, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    if backend != "postgresql":
        pytest.skip("ARRAY, INET and range types are PostgreSQL's")
    from sqlalchemy.dialects.postgresql import Range

    PgBase.metadata.drop_all(engine)
    PgBase.metadata.create_all(engine)
    auditlog.register(PgOnly)
    start = dt.datetime(2025, 3, 26, 13, 52, 59, 683345, tzinfo=UTC)
    try:
        with Session_.begin() as session:
            session.add(
                PgOnly(
                    id=1,
                    tags=["a", "b"],
                    days=[dt.date(2024, 1, 1)],
                    address="192.168.0.1",
                    period=Range(start, start + dt.timedelta(hours=1)),
                    seats=Range(1, 10),
                )
            )
        with Session_() as session:
            stored = session.get_one(PgOnly, 1)
            loaded = {k: getattr(stored, k) for k in ("tags", "days", "address", "period", "seats")}
            session.delete(stored)
            session.commit()
        create, delete = entries(engine)
        assert create.after_state == {
            "id": 1,
            "tags": ["a", "b"],
            "days": ["2024-01-01"],
            "address": "192.168.0.1",
            "period": {
                "lower": "2025-03-26T13:52:59.683345Z",
                "upper": "2025-03-26T14:52:59.683345Z",
                "bounds": "[)",
                "empty": False,
            },
            "seats": {"lower": 1, "upper": 10, "bounds": "[)", "empty": False},
        }
        assert delete.before_state == create.after_state
        decoded = auditlog.decode_state(PgOnly, delete.before_state)
        assert decoded is not None
        assert decoded["tags"] == loaded["tags"]
        assert decoded["days"] == loaded["days"]
        assert decoded["seats"] == loaded["seats"]
        assert decoded["period"] == loaded["period"]
    finally:
        PgBase.metadata.drop_all(engine)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (Decimal("1E+3"), "1E+3"),
        (
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "2024-01-01T05:00:00Z",
        ),
        (dt.time(1, 2, 3, tzinfo=UTC), "01:02:03+00:00"),
        (ipaddress.ip_address("::1"), "::1"),
        (frozenset({3, 1, 2}), [1, 2, 3]),
        ((1, "a"), [1, "a"]),
        (bytearray(b"\x00\xff"), "AP8="),
    ],
)
def test_value_encodings(value: Any, encoded: Any) -> None:
    assert encode_value(value) == encoded


def test_nan_is_a_string_and_decodes_back() -> None:
    assert encode_value(math.nan) == "NaN"
    assert math.isnan(decode_value(sa.Float(), "NaN"))


def test_numeric_scale_is_kept_as_stored() -> None:
    assert encoder_for(sa.Numeric(10, 2))(Decimal("5")) == "5.00"
    assert encoder_for(sa.Numeric(10, 2))(Decimal("5.005")) == "5.00"  # what the database keeps


def test_unknown_type_falls_back_to_text_and_never_fails() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    assert encode_value(Opaque()) == "opaque!"


def test_registered_type_round_trips() -> None:
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Money) and other.cents == self.cents

        __hash__ = None  # type: ignore[assignment]

    class MoneyType(sa.types.TypeDecorator[Money]):
        impl = sa.Integer
        cache_ok = True

        @property
        def python_type(self) -> type:
            return Money

    auditlog.register_type(
        Money, encode=lambda m: {"cents": m.cents}, decode=lambda v: Money(v["cents"])
    )
    assert encode_value(Money(250)) == {"cents": 250}
    assert decode_value(MoneyType(), {"cents": 250}) == Money(250)


class Color(enum.Enum):
    red = 1


def test_enum_is_stored_by_name() -> None:
    assert encode_value(Color.red) == "red"
    assert decode_value(sa.Enum(Color), "red") is Color.red


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2024, 3, 31, 1, 30, 0, 5, tzinfo=zoneinfo.ZoneInfo("Etc/UTC")),
        dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.timezone.utc),
        dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin")),
        dt.datetime(2024, 10, 27, 2, 30, fold=0, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin")),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-9))),
    ],
    ids=["zoneinfo-utc", "utc", "berlin-fold-1", "berlin-fold-0", "minus-nine"],
)
def test_aware_datetimes_are_written_as_the_utc_instant(moment: dt.datetime) -> None:
    utc = moment.astimezone(UTC)
    assert encode_value(moment) == utc.replace(tzinfo=None).isoformat() + "Z"
    assert decode_value(sa.DateTime(timezone=True), encode_value(moment)) == utc
