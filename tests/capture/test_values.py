"""Any value the database accepts can be audited, and reads back as it was."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import auditlog
from auditlog.serialize import decode_state, restored, storable

from ..helpers import entries
from ..models import Document, Note, Priority, Reading, Stage, Task, TypeZoo

#: Text PostgreSQL's jsonb refuses, inside a value its json column accepts.
AWKWARD: dict[str, Any] = {
    "nul": "a\x00b",
    "lone surrogate": "\ud800",
    "pair": "\U0001f600",
    "key\x00": ["\udfff", {"deep\x00": "x"}],
    "$auditlog.text": "a key that looks like the escape",
}


@pytest.fixture(autouse=True)
def _registered() -> None:
    auditlog.register(Document)


def _accepted(backend: str, value: Any) -> Any:
    """``value`` less what the database itself refuses (MariaDB: unpaired surrogates)."""
    if backend != "mariadb":
        return value
    if isinstance(value, str):
        return "".join(c for c in value if not 0xD800 <= ord(c) <= 0xDFFF)
    if isinstance(value, dict):
        return {_accepted(backend, k): _accepted(backend, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_accepted(backend, v) for v in value]
    return value


def test_states_hold_nul_and_lone_surrogates_on_every_database(
    backend: str, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    awkward = _accepted(backend, AWKWARD)
    later = _accepted(backend, ["\ud83d", "plain"])
    with Session_.begin() as session:
        session.add(Document(id=1, data=awkward, items=["\x00"]))
    with Session_.begin() as session:
        session.execute(sa.update(Document).where(Document.id == 1).values(items=later))
    with Session_.begin() as session:
        session.delete(session.get_one(Document, 1))
    create, update, delete = entries(engine)
    assert decode_state(Document, create.after_state) == {
        "id": 1, "data": awkward, "items": ["\x00"]
    }  # fmt: skip
    update_after = decode_state(Document, update.after_state)
    assert update_after is not None and update_after["items"] == later
    assert decode_state(Document, delete.before_state) == {"id": 1, "data": awkward, "items": later}


def test_context_values_with_nul_are_stored_losslessly(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with auditlog.audit_context(note="line\x00break"), Session_.begin() as session:
        session.add(Document(id=2, data={}, items=[]))
    (entry,) = entries(engine)
    assert restored(entry.extra) == {"note": "line\x00break"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_escape_is_reversible_and_leaves_plain_values_alone(value: Any) -> None:
    escaped = storable(value)
    assert restored(escaped) == value
    assert not any(_unstorable(text) for text in _strings(escaped))
    if not any(_unstorable(text) for text in _strings(value)):
        assert escaped is value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _unstorable(text: str) -> bool:
    return any(c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_an_entry_larger_than_the_database_takes_fails_clearly_and_keeps_the_connection(
    backend: str, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """9 MB written twice (before and after) exceeds MariaDB's 16 MiB max_allowed_packet."""
    auditlog.register(Note)
    big, bigger = "a" * 9_000_000, "b" * 9_000_000
    with Session_.begin() as session:
        session.add(Note(id=1, body=big))
    with Session_() as session:
        session.get_one(Note, 1).body = bigger
        if backend == "mariadb":
            with pytest.raises(auditlog.CaptureError, match="max_allowed_packet of 16,777,216"):
                session.commit()
            session.rollback()
            assert session.get_one(Note, 1).body == big  # the same connection still works
        else:
            session.commit()
    kept = [e.action_type for e in entries(engine)]
    assert kept == (["create"] if backend == "mariadb" else ["create", "update"])


# --- states are what the database stored ----------------------------------------------------------


def _stored(engine: Engine) -> dict[int, dict[str, Any]]:
    """Every task row as the database holds it, read back through the column types."""
    with Session(engine) as session:
        return {
            row.id: {c.key: getattr(row, c.key) for c in Task.__table__.columns}
            for row in session.scalars(sa.select(Task))
        }


def test_values_are_recorded_as_the_row_stores_them(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Task)
    with Session_.begin() as session:
        session.add(
            Task(
                id=1,
                stage=Stage.in_progress,
                due=dt.datetime(2025, 1, 2, 3, 4, 5),  # type: ignore[arg-type]
                flag=1,  # type: ignore[arg-type]
                priority=Priority.HIGH,
            )
        )
    (create,) = entries(engine)
    assert create.after_state is not None
    assert {k: create.after_state[k] for k in ("stage", "due", "flag", "priority")} == {
        "stage": "in-progress",
        "due": "2025-01-02",
        "flag": True,
        "priority": "high",
    }
    assert decode_state(Task, create.after_state) == _stored(engine)[1]


def test_a_batched_update_records_each_rows_own_onupdate_value(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """SQLAlchemy's executemany UPDATE copies the first row's Python onupdate to every object."""
    auditlog.register(Task)
    with Session_.begin() as session:
        session.add_all([Task(id=i) for i in (1, 2, 3)])
    with Session_.begin() as session:
        for task in session.scalars(sa.select(Task)):
            task.title = "renamed"
    stored = _stored(engine)
    assert len({row["tick"] for row in stored.values()}) == 3  # the database holds three values
    updates = [e for e in entries(engine) if e.action_type == "update"]
    assert {int(e.object_id): e.after_state["tick"] for e in updates if e.after_state} == {
        i: row["tick"] for i, row in stored.items()
    }


def test_a_value_equal_to_the_loaded_one_is_not_an_update(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """SQLAlchemy's UPDATE leaves out an assigned value its column's type compares equal to the
    loaded one (``Decimal("1.0")`` over ``1.00``), so the row keeps what it had: no entry, and
    an entry for another column keeps the stored value in its after-state."""
    auditlog.register(Reading)
    with Session_.begin() as session:
        session.add(Reading(id=1, value=Decimal("1.00"), doc={"a": 1}))
    with Session_.begin() as session:
        reading = session.get_one(Reading, 1)
        reading.value = Decimal("1.0")  # equal, and different as text
        reading.doc = {"a": 1.0}
    assert [e.action_type for e in entries(engine)] == ["create"]
    with Session_.begin() as session:
        reading = session.get_one(Reading, 1)
        reading.value = Decimal("1.0")
        reading.doc = {"a": 1.0}
        reading.label = "new"
    _, update = entries(engine)
    assert update.changed_fields == ["label"]
    assert update.before_state is not None and update.after_state is not None
    assert update.after_state["value"] == update.before_state["value"]
    assert type(update.after_state["doc"]["a"]) is int
    with Session_() as session:
        stored = session.get_one(Reading, 1)
        assert auditlog.decode_state(Reading, update.after_state) == {
            "id": 1,
            "value": stored.value,
            "doc": {"a": 1},
            "label": "new",
        }


# --- values the application holds in another type than the row stores ---------------------------


def _zoo_states(engine: Engine) -> list[tuple[str, Any, Any, Any]]:
    return [
        (e.action_type, e.before_state, e.after_state, e.changed_fields) for e in entries(engine)
    ]


_CONVERTED = {"big": "30", "numeric": 5, "flt": 2, "text": 42}


def test_values_the_database_converts_are_recorded_as_it_stores_them(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Text in an integer column is stored as the integer, an integer in a ``Numeric(30, 10)``
    with its ten places, in a float column as a float, in a text column as its text."""
    auditlog.register(TypeZoo)
    with Session_.begin() as session:
        session.add(TypeZoo(id=1, **_CONVERTED))
    stored = {"big": 30, "numeric": "5.0000000000", "flt": 2.0, "text": "42"}
    ((action, _, after, _),) = _zoo_states(engine)
    assert action == "create" and after is not None
    assert {key: after[key] for key in stored} == stored
    assert [type(after[key]) for key in stored] == [int, str, float, str]
    with Session_() as session:
        row = session.get_one(TypeZoo, 1)
        assert auditlog.decode_state(TypeZoo, after)["big"] == row.big == 30
        assert auditlog.decode_state(TypeZoo, after)["numeric"] == row.numeric


def test_an_update_to_a_converted_value_records_the_stored_one_and_no_more(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(TypeZoo)
    with Session_.begin() as session:
        session.add(TypeZoo(id=1, big=30, small=1))
    with Session_.begin() as session:
        session.get_one(TypeZoo, 1).big = "31"  # type: ignore[assignment]
    with Session_.begin() as session:  # the same value in another type: the row keeps it
        session.get_one(TypeZoo, 1).big = "31"  # type: ignore[assignment]
    assert [(a, b and b["big"], af and af["big"], c) for a, b, af, c in _zoo_states(engine)] == [
        ("create", None, 30, None),
        ("update", 30, 31, ["big"]),
    ]


def test_later_entries_of_an_object_hold_the_stored_value_too(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """An object kept across commits (``expire_on_commit=False``) still holds "30": its next
    update and its delete record 30, as the row has it."""
    auditlog.register(TypeZoo)
    with Session_.begin() as session:
        zoo = TypeZoo(id=1, big="30")  # type: ignore[arg-type]
        session.add(zoo)
    with Session_.begin() as session:
        session.add(zoo)
        zoo.small = 2
    assert zoo.big == "30"  # the object is the application's: auditlog leaves it as it is
    with Session_.begin() as session:
        session.delete(session.merge(zoo))
    states = _zoo_states(engine)
    assert [action for action, *_ in states] == ["create", "update", "delete"]
    _, (_, before, after, changed), (_, gone, _, _) = states
    assert changed == ["small"]
    assert before is not None and after is not None and gone is not None
    assert (before["big"], after["big"], gone["big"]) == (30, 30, 30)


def test_decimals_with_more_places_than_the_column_are_recorded_as_rounded(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Each database rounds in its own way (half away from zero, or through a float on
    SQLite): the entry holds what the row kept."""
    auditlog.register(TypeZoo)
    with Session_.begin() as session:
        session.add(TypeZoo(id=1, numeric=Decimal("2.00000000005")))
    with Session_() as session:
        created = session.get_one(TypeZoo, 1).numeric
    with Session_.begin() as session:
        session.get_one(TypeZoo, 1).numeric = Decimal("1.00000000015")
    with Session_() as session:
        updated = session.get_one(TypeZoo, 1).numeric
    create, update = entries(engine)
    assert create.after_state is not None and update.after_state is not None
    assert auditlog.decode_state(TypeZoo, create.after_state)["numeric"] == created
    assert auditlog.decode_state(TypeZoo, update.after_state)["numeric"] == updated
    assert update.before_state is not None
    assert update.before_state["numeric"] == create.after_state["numeric"]


# --- models of this module's own, with the column types these cases need -----------------------


class _Local(DeclarativeBase):
    pass


class Price(_Local):
    """``Numeric(10, 2, asdecimal=False)`` holds floats."""

    __tablename__ = "float_price"
    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[float] = mapped_column(sa.Numeric(10, 2, asdecimal=False))


class Gauge(_Local):
    __tablename__ = "gauge"
    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[float] = mapped_column(sa.Double())


@pytest.fixture
def local_tables(engine: Engine) -> Iterator[None]:
    _Local.metadata.create_all(engine)
    yield
    _Local.metadata.drop_all(engine)


@pytest.mark.usefixtures("local_tables")
def test_a_float_with_more_places_than_its_numeric_column_is_recorded_as_rounded(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """2.675 has three places."""
    auditlog.register(Price)
    with Session_.begin() as session:
        session.add_all([Price(id=1, value=2.675), Price(id=2, value=2.5)])
    with Session_() as session:
        stored = {p.id: p.value for p in session.scalars(sa.select(Price))}
    recorded = {int(e.object_id): e.after_state and e.after_state["value"] for e in entries(engine)}
    assert recorded == stored
    assert stored[2] == 2.5


# --- datetimes and times the column keeps otherwise than held -----------------------------------

_PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


class Shift(_Local):
    """Columns that keep fewer fractional seconds than Python holds, or drop an offset:
    MariaDB's plain ``DATETIME`` and ``TIME`` keep whole seconds, PostgreSQL's ``TIMESTAMP(0)``
    rounds to them, SQLite and MariaDB store an aware value's wall-clock time."""

    __tablename__ = "shift"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    naive_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime())
    clock: Mapped[dt.time | None] = mapped_column(sa.Time())
    stamp: Mapped[dt.datetime | None] = mapped_column(
        sa.DateTime().with_variant(postgresql.TIMESTAMP(precision=0), "postgresql")
    )
    note: Mapped[str | None] = mapped_column(sa.String(20))


_HELD = {
    "at": dt.datetime(2025, 1, 30, 9, 15, 0, 156378, tzinfo=_PLUS_TWO),
    "naive_at": dt.datetime(2025, 1, 30, 9, 15, 0, 250000, tzinfo=_PLUS_TWO),
    "clock": dt.time(9, 15, 0, 500000),
    "stamp": dt.datetime(2025, 1, 30, 9, 15, 0, 700000),
}


def _instant(value: Any) -> Any:
    """A datetime as the UTC wall-clock time it stands for (naive values read back are UTC)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


@pytest.fixture
def shifts(local_tables: None) -> None:
    auditlog.register(Shift)


def _shift_as_stored(Session_: sessionmaker[Session]) -> dict[str, Any]:
    with Session_() as session:
        row = session.get_one(Shift, 1)
        return {key: _instant(getattr(row, key)) for key in (*_HELD, "note")}


def _recorded(state: dict[str, Any] | None) -> dict[str, Any]:
    decoded = auditlog.decode_state(Shift, state)
    assert decoded is not None
    return {key: _instant(decoded[key]) for key in (*_HELD, "note")}


@pytest.mark.usefixtures("shifts")
def test_datetimes_and_times_are_recorded_as_their_columns_keep_them(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        session.add(Shift(id=1, **_HELD))
    created = _shift_as_stored(Session_)
    with Session_.begin() as session:
        shift = session.get_one(Shift, 1)
        shift.clock = dt.time(10, 0, 0, 900000)
        shift.stamp = dt.datetime(2025, 2, 1, 8, 0, 0, 600000)
    updated = _shift_as_stored(Session_)
    create, update = entries(engine)
    assert _recorded(create.after_state) == created
    assert _recorded(update.before_state) == created
    assert _recorded(update.after_state) == updated


@pytest.mark.usefixtures("shifts")
def test_an_update_the_column_keeps_as_it_was_is_no_entry(
    backend: str, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """A time that differs from the stored one only in what the column drops leaves the row
    as it was: no entry where the row did not change, an entry where it did."""
    with Session_.begin() as session:
        session.add(Shift(id=1, clock=dt.time(9, 15), stamp=dt.datetime(2025, 1, 30, 9, 15)))
    before = _shift_as_stored(Session_)
    with Session_.begin() as session:
        shift = session.get_one(Shift, 1)
        shift.clock = dt.time(9, 15, 0, 300000)
        shift.stamp = dt.datetime(2025, 1, 30, 9, 15, 0, 200000)
    after = _shift_as_stored(Session_)
    changed = sorted(key for key in before if before[key] != after[key])
    assert changed == (
        [] if backend == "mariadb" else ["clock", "stamp"] if backend == "sqlite" else ["clock"]
    )
    updates = [e for e in entries(engine) if e.action_type == "update"]
    assert [e.changed_fields for e in updates] == ([changed] if changed else [])


@pytest.mark.usefixtures("shifts")
def test_later_entries_of_an_object_hold_the_stored_time_too(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        shift = Shift(id=1, **_HELD)
        session.add(shift)
    stored = _shift_as_stored(Session_)
    with Session_.begin() as session:
        session.add(shift)  # still holding the times as given (expire_on_commit=False)
        shift.note = "late"
    with Session_.begin() as session:
        session.delete(session.merge(shift))
    _, update, delete = entries(engine)
    assert update.changed_fields == ["note"]
    assert _recorded(update.before_state) == stored
    assert _recorded(update.after_state) == {**stored, "note": "late"}
    assert _recorded(delete.before_state) == {**stored, "note": "late"}


@pytest.mark.usefixtures("local_tables")
def test_an_integer_past_2_53_in_a_float_column_is_recorded_as_the_float_stored(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Gauge)
    with Session_.begin() as session:
        session.add_all([Gauge(id=1, value=2**53 + 1), Gauge(id=2, value=-(3**40))])
    with Session_() as session:
        stored = {g.id: g.value for g in session.scalars(sa.select(Gauge))}
    assert stored == {1: float(2**53), 2: float(-(3**40))}
    # the number the entry holds is the stored float's (PostgreSQL's jsonb writes
    # -1.2157665459056929e19 as -12157665459056929000: the same decimal)
    recorded = {
        int(e.object_id): Decimal(str(e.after_state and e.after_state["value"]))
        for e in entries(engine)
    }
    assert recorded == {key: Decimal(repr(value)) for key, value in stored.items()}
