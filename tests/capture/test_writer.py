"""Every way an entry reaches the database stores it identically.

Entries go in through the driver's own execute (small batches; SQLite and MariaDB always), COPY
(psycopg 3, larger batches) or SQLAlchemy's typed INSERT (other drivers, ``schema_translate_map``).
The same rows written through each path must read back the same, value for value.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import hypothesis
import pytest
import sqlalchemy as sa
from hypothesis import strategies as st
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from ulid import ULID

import auditlog
from auditlog import documents
from auditlog.capture import writer
from auditlog.capture.ids import new_ulids
from auditlog.models import audit_log_table, content_type_table

from ..helpers import entries
from ..models import Customer

_AT = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.timezone.utc)
_STATE = {
    "id": 7,
    "name": 'Zoë \u2603 "quoted" \\ back\tslash\nnew line',
    "price": "12.30",
    "active": False,
    "tags": ["a", "b"],
    "nested": {"k": None, "deep": [1, 2.5, {"x": "y"}]},
    "when": "2024-01-01T00:04:33.000001Z",
}


def _rows(conn: Connection, count: int, at: dt.datetime = _AT) -> list[dict[str, Any]]:
    ids = new_ulids(at, count)
    rows = []
    for i, ulid in enumerate(ids):
        action = ("create", "update", "delete")[i % 3]
        rows.append(
            {
                "id": ulid,
                "tenant_id": "t-1" if i % 2 else None,
                "user_id": "ü-42",
                "action_type": action,
                "timestamp": at,
                "ip_address": "2001:db8::7" if i % 2 else None,
                "user_agent": "agent/1.0 (é)",
                "object_id": f'["{i}",2]',
                "content_type": conn.info["content_type"],
                "before_state": None if action == "create" else dict(_STATE, id=i),
                "after_state": None if action == "delete" else dict(_STATE, id=i, name=f"n{i}"),
                "changed_fields": ["name"] if action == "update" else None,
                "transaction_id": ids[0],
                "extra": {"request": "r-1", "n": i} if i % 2 else None,
                "renamed_to": f'["{i + 1}",2]' if action == "update" else None,
            }
        )
    return rows


def _stored(conn: Connection) -> list[dict[str, Any]]:
    query = sa.select(audit_log_table).order_by(audit_log_table.c.id)
    return [dict(row) for row in conn.execute(query).mappings()]


def _typed(conn: Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(audit_log_table.insert(), rows)


@pytest.fixture
def conn(engine: Engine) -> Any:
    """A connection in a transaction that is rolled back at the end, with a content type."""
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.info["content_type"] = connection.scalar(
            content_type_table.insert()
            .values(name="tests.writer.Thing")
            .returning(content_type_table.c.id)
        )
        yield connection
        transaction.rollback()
        connection.info.pop("content_type")


@pytest.mark.parametrize("count", [1, writer.COPY_THRESHOLD + 5])
def test_every_write_path_stores_the_same_values(conn: Connection, count: int) -> None:
    rows = _rows(conn, count)
    writer.insert_rows(conn, rows)
    written = _stored(conn)
    conn.execute(audit_log_table.delete())
    _typed(conn, rows)
    assert written == _stored(conn)
    assert len(written) == count
    assert written[0]["timestamp"] == _AT
    assert written[-1]["after_state"] == rows[-1]["after_state"]


def test_the_driver_path_is_the_one_taken_where_it_exists(conn: Connection) -> None:
    """SQLite, MariaDB and psycopg take prepared rows; the statement is the driver's own."""
    assert writer._driver_ready(conn)
    seen: list[bool] = []

    @sa.event.listens_for(conn, "before_cursor_execute")
    def _record(*args: Any) -> None:
        seen.append(args[-1])  # executemany

    writer.insert_rows(conn, _rows(conn, 3))
    assert len(seen) <= 1  # COPY (not a cursor execute) or one statement for the batch
    assert conn.scalar(sa.select(sa.func.count()).select_from(audit_log_table)) == 3


def test_schema_translate_map_takes_the_typed_path(conn: Connection) -> None:
    """A driver-level statement would not follow the map: SQLAlchemy's INSERT does."""
    translated = conn.execution_options(schema_translate_map={None: None})
    assert not writer._driver_ready(translated)
    rows = _rows(conn, writer.COPY_THRESHOLD + 1)
    writer.insert_rows(translated, rows)
    assert [r["id"] for r in _stored(conn)] == [str(ULID.from_bytes(r["id"])) for r in rows]


def test_times_of_other_zones_are_stored_as_the_same_instant(conn: Connection) -> None:
    plus_five = _AT.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    writer.insert_rows(
        conn, _rows(conn, 1, plus_five) + _rows(conn, writer.COPY_THRESHOLD, plus_five)
    )
    assert {row["timestamp"] for row in _stored(conn)} == {_AT}


_ASYNC_DRIVERS = {
    "sqlite": ["sqlite+aiosqlite"],
    "postgresql": ["postgresql+psycopg_async", "postgresql+asyncpg"],
    "mariadb": ["mariadb+asyncmy"],
}


async def test_async_drivers_write_small_and_large_flushes(engine: Engine, backend: str) -> None:
    """psycopg's async driver takes the driver path, asyncpg the typed INSERT; each must store
    what the flush changed, for a batch below and above the COPY threshold."""
    auditlog.register(Customer)
    many = [f"many {i}" for i in range(writer.COPY_THRESHOLD + 4)]
    for driver in _ASYNC_DRIVERS[backend]:
        url = engine.url.set(drivername=driver).render_as_string(hide_password=False)
        async_engine = create_async_engine(url)
        try:
            sessions = async_sessionmaker(async_engine)
            auditlog.enable(sessions)
            with auditlog.audit_context(user_id="async", tenant_id="t-9", note="ü"):
                async with sessions() as session:
                    session.add(Customer(name="one"))
                    await session.commit()
                async with sessions() as session:
                    session.add_all([Customer(name=name) for name in many])
                    await session.commit()
        finally:
            await async_engine.dispose()
        rows = entries(engine)
        names = [e.after_state["name"] for e in rows if e.after_state]
        assert names[0] == "one", driver
        assert sorted(names[1:]) == sorted(many), driver
        assert {(e.user_id, e.tenant_id, e.action_type) for e in rows} == {
            ("async", "t-9", "create")
        }
        assert all(e.extra == {"note": "ü"} and e.timestamp.tzinfo is not None for e in rows)
        assert len({e.transaction_id for e in rows}) == 2
        with engine.begin() as conn:
            conn.execute(audit_log_table.delete())


class _Tally:
    """A value type whose encoder refuses the number 13."""

    def __init__(self, n: int) -> None:
        self.n = n


class _TallyType(sa.types.TypeDecorator[_Tally]):
    impl = sa.Integer
    cache_ok = True

    def process_bind_param(self, value: _Tally | None, dialect: Any) -> int | None:
        return None if value is None else value.n

    def process_result_value(self, value: int | None, dialect: Any) -> _Tally | None:
        return None if value is None else _Tally(value)


def _encode_tally(value: _Tally) -> int:
    if value.n == 13:
        raise ValueError("13 cannot be recorded")
    return value.n


class _Base(DeclarativeBase):
    pass


class _Counter(_Base):
    __tablename__ = "writer_counter"
    id: Mapped[int] = mapped_column(primary_key=True)
    tally: Mapped[_Tally] = mapped_column(_TallyType())


def test_an_entry_that_fails_mid_stream_fails_the_flush(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Rows are encoded while they stream (COPY on psycopg): an error on the sixth row aborts
    the whole write, the flush fails, nothing is committed, and the connection stays usable."""
    auditlog.register_type(_Tally, encode=_encode_tally, decode=_Tally)
    auditlog.register(_Counter)
    _Base.metadata.create_all(engine)
    try:
        numbers = [1, 2, 3, 4, 5, 13, 7, 8, 9, 10, 11, 12]
        with Session_() as session:
            session.add_all([_Counter(id=n, tally=_Tally(n)) for n in numbers])
            with pytest.raises(ValueError, match="13 cannot be recorded"):
                session.commit()
        with engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(_Counter)) == 0
        assert entries(engine) == []
        with Session_.begin() as session:
            session.add_all([_Counter(id=n, tally=_Tally(n)) for n in range(20, 32)])
        assert sorted(e.after_state["tally"] for e in entries(engine) if e.after_state) == list(
            range(20, 32)
        )
    finally:
        _Base.metadata.drop_all(engine)


def test_a_flush_with_read_back_values_keeps_one_time_and_increasing_ids(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Entries whose values the database set are written after the others, but with the
    flush's one timestamp and ids that continue the same increasing sequence."""
    from ..models import Article

    auditlog.register(Article)
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add(Article(title="server values"))
        session.add_all([Customer(name=f"c{i}") for i in range(writer.COPY_THRESHOLD + 2)])
    rows = entries(engine)
    assert len(rows) == writer.COPY_THRESHOLD + 3
    assert len({e.timestamp for e in rows}) == 1
    assert [e.id for e in rows] == sorted(e.id for e in rows)
    assert len({e.id for e in rows}) == len(rows)


# JSON documents: orjson (the ``fast`` extra) where installed, the standard library otherwise.
# Both must store the same documents.

_orjson_dumps = documents._orjson()
_DOCUMENT = {
    "text": 'Zoë \u2603 \U0001f600 "quoted" \\ \t\n',
    "numbers": [0, -7, 2**63 - 1, 0.1, -2.5, 1e-07, 123456.789],
    "nested": {"a": [1, {"b": [None, True, False, []]}], "empty": {}},
    "int_keys": {1: "one", 20: "twenty"},
    "decimal": Decimal("1.10"),
    "moment": dt.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=dt.timezone.utc),
    "naive": dt.datetime(2024, 5, 6, 7, 8, 9),
    "day": dt.date(2024, 5, 6),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


@pytest.fixture(params=["stdlib", "orjson"])
def json_encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with each encoder as the one documents are written with."""
    if request.param == "orjson":
        assert _orjson_dumps is not None, "orjson is part of the test dependencies"
        monkeypatch.setattr(documents, "encoder", _orjson_dumps)
    else:
        monkeypatch.setattr(documents, "encoder", documents.stdlib_dumps)
    return str(request.param)


def test_orjson_is_the_encoder_where_it_is_installed() -> None:
    assert _orjson_dumps is not None
    assert documents.encoder.__name__ == "orjson_dumps"


@pytest.mark.parametrize("count", [1, writer.COPY_THRESHOLD + 1])
def test_both_json_encoders_store_the_same_documents(
    conn: Connection, json_encoder: str, count: int
) -> None:
    """What each encoder stores reads back as the standard library's document, on every path:
    including integers beyond 64 bits, which orjson refuses and hands back."""
    rows = _rows(conn, count)
    for i, row in enumerate(rows):
        row["before_state"] = dict(_DOCUMENT, big=2**70 + i) if i % 2 else None
        row["after_state"] = dict(_DOCUMENT, n=i)
    writer.insert_rows(conn, rows)
    stored = _stored(conn)
    assert len(stored) == count
    for row, back in zip(rows, stored, strict=True):
        assert back["after_state"] == json.loads(documents.stdlib_dumps(row["after_state"]))
        if row["before_state"] is not None:
            assert back["before_state"]["big"] == row["before_state"]["big"]
            assert back["before_state"] == json.loads(documents.stdlib_dumps(row["before_state"]))


def test_orjson_hands_what_it_refuses_to_the_standard_library() -> None:
    assert _orjson_dumps is not None
    for value in ({"big": -(2**64)}, {"lone": "\ud800"}, {"deep": _nested(300)}):
        assert _orjson_dumps(value) == documents.stdlib_dumps(value)


def test_an_encoder_error_is_the_same_with_both() -> None:
    """A value the library cannot encode fails the same way, whichever encoder runs."""
    assert _orjson_dumps is not None
    auditlog.register_type(_Tally, encode=_encode_tally, decode=_Tally)
    for dumps in (_orjson_dumps, documents.stdlib_dumps):
        assert json.loads(dumps({"t": _Tally(3)})) == {"t": 3}
        with pytest.raises(ValueError, match="13 cannot be recorded"):
            dumps({"t": _Tally(13)})


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@hypothesis.given(_json_values)
def test_both_json_encoders_write_the_same_value(value: Any) -> None:
    assert _orjson_dumps is not None
    assert json.loads(_orjson_dumps(value)) == json.loads(documents.stdlib_dumps(value))


def test_a_flush_whose_entries_all_wait_for_read_back_opens_no_empty_copy(
    engine: Engine, Session_: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update of an Article sets ``revision`` in the database, so each entry waits for the
    value: the flush's first write has no rows and must not open a COPY for nothing."""
    from ..models import Article

    auditlog.register(Article)
    count = writer.COPY_THRESHOLD + 2
    with Session_.begin() as session:
        session.add_all([Article(title=f"a{i}", price=i) for i in range(count)])
    copies: list[int] = []
    original = writer.copy_rows

    def counting_copy(connection: Connection, table: Any, columns: Any, rows: Any) -> int:
        written = original(connection, table, columns, rows)
        copies.append(written)
        return written

    monkeypatch.setattr(writer, "copy_rows", counting_copy)
    with Session_.begin() as session:
        for article in session.scalars(sa.select(Article)):
            article.price += 100
    updates = [e for e in entries(engine) if e.action_type == "update"]
    assert sorted(e.after_state["price"] for e in updates) == list(range(100, 100 + count))
    assert {(e.before_state["revision"], e.after_state["revision"]) for e in updates} == {(0, 1)}
    with engine.connect() as connection:
        can_copy = writer.can_copy(connection)
    assert copies == ([count] if can_copy else [])  # one COPY, of the read-back entries
