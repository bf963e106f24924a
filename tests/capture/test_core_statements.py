"""Core statements and the legacy bulk_* methods on an audited session's connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..helpers import entries
from ..models import Customer, Membership, Truck, Vehicle


@pytest.fixture(autouse=True)
def _registered() -> None:
    auditlog.register(Customer)
    auditlog.register(Membership)


def test_bulk_save_objects_records_creates_and_updates(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        session.bulk_save_objects([Customer(name="a"), Customer(name="b")])
    with Session_() as session:
        first = session.scalars(sa.select(Customer).where(Customer.name == "a")).one()
    first.name = "a2"  # detached, as bulk_save_objects is meant to be used
    with Session_.begin() as session:
        session.bulk_save_objects([first])
    created = entries(engine, action_type="create")
    assert sorted(e.after_state["name"] for e in created if e.after_state) == ["a", "b"]
    assert all(e.object_id == str(e.after_state and e.after_state["id"]) for e in created)
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("a", "a2")


def test_bulk_insert_and_update_mappings(engine: Engine, Session_: sessionmaker[Session]) -> None:
    with auditlog.audit_context(user_id="legacy"), Session_.begin() as session:
        session.bulk_insert_mappings(  # type: ignore[arg-type]
            Customer, [{"id": 10, "name": "x"}, {"id": 11, "name": "y", "email": "y@x"}]
        )
        session.bulk_insert_mappings(Membership, [{"org": "o", "member": 1, "role": "r"}])  # type: ignore[arg-type]
        session.bulk_update_mappings(Customer, [{"id": 10, "email": "x@x"}])  # type: ignore[arg-type]
    log = entries(engine)
    assert {(e.action_type, e.object_id) for e in log} == {
        ("create", "10"),
        ("create", "11"),
        ("create", '["o",1]'),
        ("update", "10"),
    }
    assert {e.user_id for e in log} == {"legacy"}
    (update,) = [e for e in log if e.action_type == "update"]
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["email"], update.after_state["email"]) == (None, "x@x")
    assert update.changed_fields == ["email"]


def test_core_statements_through_the_session_are_captured(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    table = Customer.__table__
    with Session_.begin() as session:
        session.execute(sa.insert(table), [{"id": 1, "name": "core"}, {"id": 2, "name": "two"}])
        session.execute(sa.update(table).where(table.c.id == 1).values(name="changed"))
        session.connection().execute(sa.delete(table).where(table.c.id == 2))
    log = [(e.action_type, e.object_id) for e in entries(engine)]
    assert sorted(log) == [("create", "1"), ("create", "2"), ("delete", "2"), ("update", "1")]
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("core", "changed")


def test_rolled_back_core_writes_leave_no_entries(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_() as session:
        session.bulk_insert_mappings(Customer, [{"name": "gone"}])  # type: ignore[arg-type]
        session.rollback()
    assert entries(engine) == []


def test_a_connection_back_in_the_pool_is_not_the_sessions_anymore(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        session.add(Customer(name="via session"))
    with engine.begin() as conn:  # the same pooled connection, outside any session
        conn.execute(sa.insert(Customer.__table__).values(name="plain core"))
    assert [e.after_state and e.after_state["name"] for e in entries(engine)] == ["via session"]


def test_joined_inheritance_tables_are_left_to_the_warning(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Vehicle)
    auditlog.warn_unaudited_writes(engine)
    try:
        with Session_.begin() as session, pytest.warns(auditlog.UnauditedWriteWarning):
            session.bulk_save_objects([Truck(payload_kg=1)])
    finally:
        auditlog.warn_unaudited_writes(engine, enabled=False)


_Listener = Callable[[Session, object, object], None]


@pytest.mark.parametrize("app_listener", ["drops_every_new_object", "raises"])
def test_a_flush_that_ends_early_leaves_later_statements_audited(
    engine: Engine, Session_: sessionmaker[Session], app_listener: str
) -> None:
    """SQLAlchemy fires no event after a flush left with nothing to write, nor after a
    before_flush listener that raised (and a closed session never rolls back)."""
    with Session_.begin() as session:
        session.add(Customer(id=1, name="kept"))

    def drop_drafts(session: Session, flush_context: object, instances: object) -> None:
        for obj in list(session.new):
            session.expunge(obj)  # the flush then has nothing to write and ends at once

    def refuse(session: Session, flush_context: object, instances: object) -> None:
        raise ValueError("refused by the application")

    listener: _Listener = drop_drafts if app_listener == "drops_every_new_object" else refuse
    sa.event.listen(Session_, "before_flush", listener)  # after auditlog's own
    try:
        with Session_() as session:
            session.add(Customer(id=2, name="draft"))
            if listener is refuse:
                with pytest.raises(ValueError, match="refused"):
                    session.flush()
            else:
                session.commit()
    finally:
        sa.event.remove(Session_, "before_flush", listener)
    table = Customer.__table__
    with Session_.begin() as session:
        session.execute(sa.update(table).where(table.c.id == 1).values(name="by core"))
    (update,) = entries(engine, action_type="update", object_id="1")
    assert update.after_state is not None and update.after_state["name"] == "by core"


def test_multi_row_values_and_insert_from_select_are_captured(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    table = Customer.__table__
    with Session_.begin() as session:
        session.execute(sa.insert(table).values([{"name": "a"}, {"name": "b"}]))
        session.execute(sa.insert(table).values([{"id": 10, "name": "c"}, {"id": 11, "name": "d"}]))
        session.execute(
            sa.insert(table).from_select(
                ["name"], sa.select(table.c.name).where(table.c.name.in_(["c", "d"]))
            )
        )
    with engine.connect() as conn:
        stored = {row.id: row.name for row in conn.execute(sa.select(table.c.id, table.c.name))}
    assert len(stored) == 6
    created = entries(engine, action_type="create")
    assert {int(e.object_id): e.after_state["name"] for e in created if e.after_state} == stored


def test_an_insert_returning_what_the_application_asked_for(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    table = Customer.__table__
    with Session_.begin() as session:  # keys given: the statement runs as written
        returned = session.execute(
            sa.insert(table).values([{"id": 5, "name": "e"}]).returning(table.c.name)
        ).all()
    assert [tuple(row) for row in returned] == [("e",)]
    assert [e.object_id for e in entries(engine, action_type="create")] == ["5"]
    with Session_() as session:  # keys left to the database: refused before it runs
        statement = sa.insert(table).values(name="f").returning(table.c.name)
        with pytest.raises(auditlog.CaptureError, match=r"insert\(customer\) has a RETURNING"):
            session.execute(statement)
        session.rollback()
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(table)) == 1


@pytest.mark.parametrize("form", ["core", "orm"])
def test_a_delete_that_leaves_rows_it_matched_records_only_the_rows_it_removed(
    engine: Engine,
    Session_: sessionmaker[Session],
    rows_kept_from_delete: Callable[[Any], Any],
    form: str,
) -> None:
    with Session_.begin() as session:
        session.add_all(
            [Customer(id=1, name="go"), Customer(id=2, name="keep"), Customer(id=3, name="go")]
        )
    target = Customer.__table__ if form == "core" else Customer
    statement = rows_kept_from_delete(sa.delete(target).where(sa.column("id").in_([1, 2, 3])))
    with Session_.begin() as session:
        removed = session.execute(statement, execution_options={"synchronize_session": False})
        assert removed.rowcount == 2  # type: ignore[attr-defined]
    with Session_() as session:
        left = set(session.scalars(sa.select(Customer.id)))
    assert len(left) == 1
    deleted = {e.object_id for e in entries(engine, action_type="delete")}
    assert deleted == {str(i) for i in (1, 2, 3)} - {str(i) for i in left}


def test_an_update_that_changes_keys_is_recorded_under_the_old_key_naming_the_new(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    customers, members = Customer.__table__, Membership.__table__
    with Session_.begin() as session:
        session.add_all([Customer(id=i, name=f"c{i}") for i in (1, 2, 3)])
        session.add(Membership(org="old", member=1, role="r"))
    with Session_.begin() as session:
        session.execute(sa.update(customers).where(customers.c.id == 1).values(id=5))
        session.connection().execute(
            sa.update(customers).where(customers.c.id == sa.bindparam("was")),
            [{"was": 2, "id": 6, "name": "six"}, {"was": 3, "id": 7, "name": "seven"}],
        )
        session.execute(sa.update(members).values(org="new"))
        session.execute(  # the ORM form
            sa.update(Customer).where(Customer.id == 5).values(id=8),
            execution_options={"synchronize_session": False},
        )
    updates = {e.object_id: e for e in entries(engine, action_type="update")}
    assert {key: e.renamed_to for key, e in updates.items()} == {
        "1": "5",
        "5": "8",
        "2": "6",
        "3": "7",
        '["old",1]': '["new",1]',
    }
    assert updates["1"].changed_fields == ["id"]
    assert updates["2"].changed_fields == ["id", "name"]
    assert updates["2"].before_state is not None and updates["2"].after_state is not None
    assert (updates["2"].before_state["name"], updates["2"].after_state["name"]) == ("c2", "six")
    with Session_() as session:
        assert auditlog.state_as_of(session, Customer, 1, entries(engine)[-1].id) is None
        assert auditlog.state_as_of(session, Customer, 6, entries(engine)[-1].id) == {
            "id": 6,
            "tenant_id": None,
            "name": "six",
            "email": None,
            "password": None,
            "notes": None,
        }


@pytest.mark.parametrize("form", ["core", "orm"])
def test_a_new_key_from_a_named_parameter_or_in_another_type_is_followed(
    engine: Engine, Session_: sessionmaker[Session], form: str
) -> None:
    """``.values(id=bindparam("new"))`` takes the key from each parameter set; a key given as
    text for an integer column names the row as the database stores it."""
    customers = Customer.__table__
    target = customers if form == "core" else Customer
    with Session_.begin() as session:
        session.add_all([Customer(id=i, name=f"c{i}") for i in (1, 2, 3)])
    moved = sa.update(target).where(customers.c.id == sa.bindparam("old"))
    with Session_.begin() as session:
        session.execute(
            moved.values(id=sa.bindparam("new")),
            [{"old": 1, "new": 10}, {"old": 2, "new": 20}]
            if form == "core"
            else {"old": 1, "new": 10},
            execution_options={"synchronize_session": False},
        )
        session.execute(
            sa.update(target).where(customers.c.id == 3).values(id="30"),
            execution_options={"synchronize_session": False},
        )
    renamed = {e.object_id: e.renamed_to for e in entries(engine, action_type="update")}
    assert renamed == ({"1": "10", "2": "20"} if form == "core" else {"1": "10"}) | {"3": "30"}


@pytest.mark.parametrize("form", ["core", "orm"])
def test_an_update_that_sets_a_key_to_an_expression_is_refused(
    engine: Engine, Session_: sessionmaker[Session], form: str
) -> None:
    customers = Customer.__table__
    target = customers if form == "core" else Customer
    with Session_.begin() as session:
        session.add(Customer(id=1, name="one"))
    with Session_() as session, pytest.raises(auditlog.CaptureError, match=r"primary key \(id\)"):
        session.execute(
            sa.update(target).values(id=customers.c.id + 10),
            execution_options={"synchronize_session": False},
        )
    with engine.connect() as conn:
        assert conn.scalar(sa.select(customers.c.id)) == 1
    assert [e.action_type for e in entries(engine)] == ["create"]
