"""Keys a statement's parameters give, and databases that cannot return the keys they make.

A statement's parameters may give a key in another Python type than the column's ("30" for an
integer key): the database stores 30, and the entry must be there all the same. A database
without ``INSERT ... RETURNING`` (MySQL, SQLite before 3.35) cannot say which keys it gave the
rows of a multi-row INSERT: such a statement is refused, never run without its entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import CaptureError

from ..helpers import entries
from ..models import Account, Customer, Loan, Membership, TypeZoo


def _stored(engine: Engine, model: Any) -> list[tuple[Any, ...]]:
    table = model.__table__
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key))]


def _upsert(backend: str) -> Any:
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.mysql import insert
    return insert


# --- keys in the statement's values ------------------------------------------------------------


def test_a_row_inserted_with_its_key_in_the_statements_values_is_recorded(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """``.values(id=5)`` holds the key in a bound parameter; a parameter bound only when the
    statement runs leaves it to be read back."""
    auditlog.register(Customer)
    table = Customer.__table__
    with Session_.begin() as session:
        session.execute(sa.insert(table).values(id=5, name="five"))
        session.execute(sa.insert(table).values(id=sa.bindparam("key"), name="six"), {"key": 6})
    creates = entries(engine, action_type="create")
    assert [(e.object_id, e.after_state and e.after_state["name"]) for e in creates] == [
        ("5", "five"),
        ("6", "six"),
    ]


def test_parameters_over_the_statements_values_name_the_row(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """SQLAlchemy runs ``.values(id=5)`` with the parameter ``{"id": 6}`` as the row 6."""
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.execute(sa.insert(Customer.__table__).values(id=5, name="n"), {"id": 6})
    assert [row[0] for row in _stored(engine, Customer)] == [6]
    assert [e.object_id for e in entries(engine, action_type="create")] == ["6"]


# --- keys given as text for an integer key -------------------------------------------------------


@pytest.mark.parametrize("target", ["table", "model"])
def test_an_insert_giving_integer_keys_as_text_is_recorded(
    engine: Engine, Session_: sessionmaker[Session], target: str
) -> None:
    auditlog.register(Customer)
    into = Customer.__table__ if target == "table" else Customer
    with Session_.begin() as session:
        session.execute(sa.insert(into), [{"id": "30", "name": "a"}, {"id": "31", "name": "b"}])
    creates = entries(engine, action_type="create")
    assert [(e.object_id, e.after_state and e.after_state["name"]) for e in creates] == [
        ("30", "a"),
        ("31", "b"),
    ]
    assert creates[0].after_state is not None and creates[0].after_state["id"] == 30


@pytest.mark.parametrize("target", ["table", "model"])
def test_an_update_by_keys_given_as_text_is_recorded(
    engine: Engine, Session_: sessionmaker[Session], target: str
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add_all([Customer(id=40, name="a"), Customer(id=41, name="b")])
    with Session_.begin() as session:
        if target == "model":  # the ORM's bulk UPDATE by primary key
            session.execute(
                sa.update(Customer), [{"id": "40", "name": "a2"}, {"id": "41", "name": "b2"}]
            )
        else:
            table = Customer.__table__
            session.execute(
                sa.update(table).where(table.c.id == sa.bindparam("key")),
                [{"key": "40", "name": "a2"}, {"key": "41", "name": "b2"}],
            )
    updates = entries(engine, action_type="update")
    assert [(e.object_id, e.changed_fields) for e in updates] == [
        ("40", ["name"]),
        ("41", ["name"]),
    ]
    assert [u.after_state and u.after_state["name"] for u in updates] == ["a2", "b2"]


def test_a_delete_by_keys_given_as_text_is_recorded(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add_all([Customer(id=id_, name=f"n{id_}") for id_ in (50, 51, 52)])
    table = Customer.__table__
    with Session_.begin() as session:
        session.execute(
            sa.delete(table).where(table.c.id == sa.bindparam("id")), [{"id": "50"}, {"id": "51"}]
        )
    deletes = entries(engine, action_type="delete")
    assert [(e.object_id, e.before_state and e.before_state["name"]) for e in deletes] == [
        ("50", "n50"),
        ("51", "n51"),
    ]
    assert [row[0] for row in _stored(engine, Customer)] == [52]


# --- an upsert given its key, that updates a row conflicting on another column ------------------


def _insert_over_account_one(
    backend: str, Session_: sessionmaker[Session], target: str, name: str
) -> Any:
    """Account 1 (code "a") stored; an INSERT of the key 99 with the code "a" and ``name``,
    on the table or the model, with the dialect's own insert (for its conflict clauses)."""
    auditlog.register(Account)
    with Session_.begin() as session:
        session.add(Account(ident=1, code="a", name="first"))
    insert = _upsert(backend)
    if target == "table":
        return insert(Account.__table__).values(id=99, db_code="a", name=name)
    return insert(Account).values(ident=99, code="a", name=name)


@pytest.mark.parametrize("target", ["table", "model"])
def test_an_upsert_that_updates_the_row_it_conflicts_with_records_that_update(
    backend: str, engine: Engine, Session_: sessionmaker[Session], target: str
) -> None:
    """The values give the key 99; the row updated is 1, which holds the same code."""
    stmt = _insert_over_account_one(backend, Session_, target, "upserted")
    if backend == "mariadb":
        stmt = stmt.on_duplicate_key_update(name=stmt.inserted.name)
    else:
        code = Account.__table__.c.db_code
        stmt = stmt.on_conflict_do_update(index_elements=[code], set_={"name": "upserted"})
    with Session_.begin() as session:
        session.execute(stmt)
    assert [row[:3] for row in _stored(engine, Account)] == [(1, "a", "upserted")]
    (update,) = entries(engine, action_type="update")
    assert update.object_id == "1"
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("first", "upserted")
    assert [e.object_id for e in entries(engine, action_type="create")] == ["1"]


@pytest.mark.parametrize("target", ["table", "model"])
def test_an_upsert_that_leaves_the_row_it_conflicts_with_records_nothing(
    backend: str, engine: Engine, Session_: sessionmaker[Session], target: str
) -> None:
    stmt = _insert_over_account_one(backend, Session_, target, "other")
    if backend == "mariadb":  # no DO NOTHING: the row's name set to itself
        stmt = stmt.on_duplicate_key_update(name=Account.__table__.c.name)
    else:
        stmt = stmt.on_conflict_do_nothing()
    with Session_.begin() as session:
        session.execute(stmt)
    assert [row[:3] for row in _stored(engine, Account)] == [(1, "a", "first")]
    assert [(e.action_type, e.object_id) for e in entries(engine)] == [("create", "1")]


@pytest.mark.parametrize("target", ["table", "model"])
def test_an_upsert_that_gives_the_row_it_conflicts_with_its_key_records_the_change_of_key(
    backend: str, engine: Engine, Session_: sessionmaker[Session], target: str
) -> None:
    """Row 1 (code "a") takes the key 99 of the values that conflicted with it: an update of 1
    that names 99, not a new object 99 beside an untouched 1."""
    stmt = _insert_over_account_one(backend, Session_, target, "moved")
    key = Account.__table__.c.id
    if backend == "mariadb":
        stmt = stmt.on_duplicate_key_update({key: stmt.inserted.id, "name": stmt.inserted.name})
    else:
        code = Account.__table__.c.db_code
        stmt = stmt.on_conflict_do_update(
            index_elements=[code], set_={key: stmt.excluded.id, "name": stmt.excluded.name}
        )
    with Session_.begin() as session:
        session.execute(stmt)
    assert [row[:3] for row in _stored(engine, Account)] == [(99, "a", "moved")]
    assert [(e.action_type, e.object_id, e.renamed_to) for e in entries(engine)] == [
        ("create", "1", None),
        ("update", "1", "99"),
    ]
    update = entries(engine, action_type="update")[0]
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("first", "moved")
    assert (update.before_state["ident"], update.after_state["ident"]) == (1, 99)


def test_an_upsert_that_moves_the_row_it_conflicts_with_out_of_reach_is_refused(
    backend: str, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Its key and its conflict values both changed: which row it became is unknown, so the
    transaction cannot commit."""
    stmt = _insert_over_account_one(backend, Session_, "table", "moved")
    key, code = Account.__table__.c.id, Account.__table__.c.db_code
    if backend == "mariadb":
        stmt = stmt.on_duplicate_key_update({key: stmt.inserted.id, code: "b"})
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=[code], set_={key: stmt.excluded.id, code: "b"}
        )
    with Session_() as session:
        with pytest.raises(CaptureError, match="changed the key of the row"):
            session.execute(stmt)
        session.rollback()
    assert [row[:3] for row in _stored(engine, Account)] == [(1, "a", "first")]


# --- a database that cannot return the keys it makes ---------------------------------------------


@pytest.fixture
def no_returning(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """An enabled sessionmaker on the same database through an engine whose dialect has no
    ``INSERT ... RETURNING``, as MySQL's or that of SQLite before 3.35."""
    other = sa.create_engine(engine.url)
    with other.connect():  # the dialect learns the server's version (and RETURNING) here
        pass
    other.dialect.insert_returning = False
    other.dialect.insert_executemany_returning = False
    other.dialect.insert_executemany_returning_sort_by_parameter_order = False
    maker = sessionmaker(other, expire_on_commit=False)
    auditlog.enable(maker)
    auditlog.register(Customer)
    try:
        yield maker
    finally:
        other.dispose()


def test_objects_and_rows_with_their_keys_are_recorded_without_returning(
    engine: Engine, no_returning: sessionmaker[Session]
) -> None:
    with no_returning.begin() as session:
        session.add_all([Customer(name="a"), Customer(name="b")])
    with no_returning.begin() as session:
        session.execute(sa.insert(Customer), [{"id": 70, "name": "c"}, {"id": 71, "name": "d"}])
        session.execute(sa.insert(Customer.__table__).values(name="e"))  # one row: its id
    names = {row[0]: row[2] for row in _stored(engine, Customer)}
    creates = entries(engine, action_type="create")
    assert sorted(e.object_id for e in creates) == sorted(str(key) for key in names)
    assert {e.after_state and e.after_state["name"] for e in creates} == set("abcde")
    for entry in creates:
        assert entry.after_state is not None
        assert entry.after_state["name"] == names[int(entry.object_id)]


def test_rows_whose_keys_are_known_before_they_run_are_recorded_without_returning(
    engine: Engine, no_returning: sessionmaker[Session]
) -> None:
    """A Python default (Loan's uuid4), keys in each parameter set beside ``.values()``, and a
    ``bindparam()`` in ``.values()`` given by each parameter set."""
    auditlog.register(Loan)
    table = Customer.__table__
    with no_returning.begin() as session:
        session.execute(sa.insert(Loan.__table__), [{"amount": 1}, {"amount": 2}])
        session.execute(sa.insert(table).values(name="c"), [{"id": 1}, {"id": 2}])
        session.execute(
            sa.insert(table).values(id=sa.bindparam("k"), name="d"), [{"k": 3}, {"k": 4}]
        )
    loans = {str(row[0]) for row in _stored(engine, Loan)}
    creates = entries(engine, action_type="create")
    assert len(loans) == 2
    assert {e.object_id for e in creates} == loans | {"1", "2", "3", "4"}
    names = {e.object_id: e.after_state and e.after_state.get("name") for e in creates}
    assert [names[key] for key in ("1", "2", "3", "4")] == ["c", "c", "d", "d"]


@pytest.mark.parametrize(
    "statement",
    ["orm rows", "orm row", "core rows", "core values", "core select"],
)
def test_rows_whose_keys_the_database_makes_are_refused_without_returning(
    engine: Engine, no_returning: sessionmaker[Session], statement: str
) -> None:
    table = Customer.__table__
    run: dict[str, Any] = {
        "orm rows": lambda s: s.execute(sa.insert(Customer), [{"name": "a"}, {"name": "b"}]),
        "orm row": lambda s: s.execute(sa.insert(Customer).values(name="a")),
        "core rows": lambda s: s.execute(sa.insert(table), [{"name": "a"}, {"name": "b"}]),
        "core values": lambda s: s.execute(sa.insert(table).values([{"name": "a"}, {"name": "b"}])),
        "core select": lambda s: s.execute(
            sa.insert(table).from_select(["name"], sa.select(sa.literal("a")))
        ),
    }
    with no_returning() as session:
        with pytest.raises(CaptureError) as refused:
            run[statement](session)
        if statement == "core rows":  # it ran, and its keys came back unknown: no commit
            with pytest.raises(CaptureError, match="cannot commit"):
                session.commit()
        session.rollback()
    message = str(refused.value)
    assert "leaves the primary key (id) to the database" in message
    assert "give the keys in its values" in message
    assert _stored(engine, Customer) == []
    assert entries(engine) == []


# --- an object given its key as text -------------------------------------------------------------


def test_an_object_given_its_integer_key_as_text_is_recorded_as_stored(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """The session knows the object by ("30",), the row by 30: every entry holds 30, and a
    merge that sets "30" over the loaded 30 changes no row and writes no entry."""
    auditlog.register(Customer)
    with Session_.begin() as session:
        customer = Customer(id="30", name="x")  # type: ignore[arg-type]
        session.add(customer)
    with Session_.begin() as session:
        session.add(customer)
        customer.name = "y"
    with Session_.begin() as session:
        session.delete(session.merge(customer))
    found = [(e.action_type, e.object_id, e.before_state, e.after_state) for e in entries(engine)]
    assert [(action, object_id) for action, object_id, _, _ in found] == [
        ("create", "30"),
        ("update", "30"),
        ("delete", "30"),
    ]
    ids = [state["id"] for _, _, before, after in found for state in (before, after) if state]
    assert ids == [30, 30, 30, 30]
    assert _stored(engine, Customer) == []


def test_the_legacy_bulk_methods_with_integer_keys_as_text_are_recorded(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.bulk_insert_mappings(
            Customer, [{"id": "60", "name": "a"}, {"id": "61", "name": "b"}]
        )  # type: ignore[arg-type]
    with Session_.begin() as session:
        session.bulk_update_mappings(Customer, [{"id": "60", "name": "a2"}])  # type: ignore[arg-type]
    found = [
        (e.action_type, e.object_id, e.after_state and e.after_state["name"])
        for e in entries(engine)
    ]
    assert found == [("create", "60", "a"), ("create", "61", "b"), ("update", "60", "a2")]


def test_a_key_held_in_another_form_files_every_entry_under_the_stored_key(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """ "030" is the row 30; a composite key of an integer for text and text for an integer is
    the row ("5", 3); setting "30" over the loaded 30 changes no key."""
    auditlog.register(Customer)
    auditlog.register(Membership)
    with Session_.begin() as session:
        customer = Customer(id="030", name="x")  # type: ignore[arg-type]
        member = Membership(org=5, member="3", role="a")  # type: ignore[arg-type]
        session.add_all([customer, member])
    with Session_.begin() as session:
        session.add_all([customer, member])
        customer.name = "y"
        member.role = "b"
    with Session_.begin() as session:
        session.get_one(Customer, 30).id = "30"  # type: ignore[assignment]
    with Session_.begin() as session:
        session.delete(session.merge(member))
    found = [(e.action_type, e.object_id, e.renamed_to) for e in entries(engine)]
    member_key = json.dumps(["5", 3], separators=(",", ":"))
    assert sorted(found) == sorted(
        [
            ("create", "30", None),
            ("create", member_key, None),
            ("update", "30", None),
            ("update", member_key, None),
            ("delete", member_key, None),
        ]
    )


def test_a_value_given_again_keeps_later_entries_as_stored(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Each request's form makes a new "30": given again, it is not written, and the object
    then holds that new string; its later entries still hold the row's 30."""
    auditlog.register(Customer)
    auditlog.register(TypeZoo)

    def form() -> str:
        return "".join(["3", "0"])

    with Session_.begin() as session:
        zoo = TypeZoo(id=1, big=form(), small=1)
        session.add(zoo)
    with Session_.begin() as session:
        session.add(zoo)
        zoo.big = form()  # type: ignore[assignment]
        zoo.small = 2
    with Session_.begin() as session:
        session.add(zoo)
        zoo.small = 3
    with Session_.begin() as session:
        session.delete(session.merge(zoo))
    bigs = [
        (
            e.action_type,
            e.before_state and e.before_state["big"],
            e.after_state and e.after_state["big"],
        )
        for e in entries(engine)
    ]
    assert bigs == [
        ("create", None, 30),
        ("update", 30, 30),
        ("update", 30, 30),
        ("delete", 30, None),
    ]
