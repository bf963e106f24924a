"""What a flush writes: create / update / delete entries, exactly as the contract describes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import AuditLog, ContentType
from auditlog.capture import content_types

from ..helpers import actions, entries, rows_kept
from ..models import (
    Badge,
    Course,
    Crew,
    Customer,
    Draft,
    Loan,
    Membership,
    Sailor,
    Tag,
    Truck,
    Vehicle,
)


@pytest.fixture(autouse=True)
def _registered() -> None:
    auditlog.register(Customer, mask={"password"})
    auditlog.register(Loan)
    auditlog.register(Membership)
    auditlog.register(Vehicle)


def test_create_records_every_attribute_with_keys_and_defaults(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        customer = Customer(name="Ada", email="ada@example.com", password="secret")
        session.add(customer)
        session.flush()
        loan = Loan(amount=Decimal("1500.25"), customer=customer)
        session.add(loan)
    (c_entry, l_entry) = entries(engine)
    assert c_entry.action_type == "create"
    assert c_entry.before_state is None
    assert c_entry.object_id == str(customer.id)
    assert c_entry.after_state == {
        "id": customer.id,
        "tenant_id": None,
        "name": "Ada",
        "email": "ada@example.com",
        "password": auditlog.MASKED,
        "notes": None,
        "loans": [],  # one-to-many collection: sorted ids of the related loans
    }
    assert l_entry.object_id == str(loan.id)
    assert l_entry.after_state is not None
    assert (
        l_entry.after_state
        == {
            "id": str(loan.id),
            "customer_id": customer.id,
            "amount": "1500.2500",
            "status": "draft",  # Python-side default
            "version": 1,  # server default, read back after the INSERT
            "created_at": loan.created_at.astimezone(dt.timezone.utc).isoformat()[:-6] + "Z",
        }
    )
    assert c_entry.content_type != l_entry.content_type


def test_update_records_before_and_after(engine: Engine, Session_: sessionmaker[Session]) -> None:
    with Session_.begin() as session:
        customer = Customer(name="Ada", email="a@example.com")
        session.add(customer)
    with Session_.begin() as session:
        customer = session.get_one(Customer, customer.id)
        customer.name = "Ada L."
    update = entries(engine, action_type="update")
    assert len(update) == 1
    assert update[0].before_state is not None and update[0].after_state is not None
    assert update[0].before_state["name"] == "Ada"
    assert update[0].after_state["name"] == "Ada L."
    assert update[0].before_state["email"] == update[0].after_state["email"] == "a@example.com"
    assert update[0].changed_fields == ["name"]


def test_a_flush_orders_its_entries_new_objects_as_added_then_changes_by_key(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """The unit of work holds a flush's objects in sets: the entries still follow the order
    objects were added in (as SQLAlchemy inserts them), then the changed ones by primary key."""
    order = [7, 3, 9, 1, 5, 8, 2, 6, 4]
    with Session_.begin() as session:
        session.add_all([Customer(id=i, name=f"c{i}") for i in order])
    with Session_.begin() as session:
        loaded = {c.id: c for c in session.scalars(sa.select(Customer))}
        for i in order:  # one flush, at the commit
            loaded[i].name = f"renamed {i}"
        session.add(Customer(id=20, name="late"))
    assert actions(engine) == [
        *(("create", str(i)) for i in order),
        ("create", "20"),
        *(("update", str(i)) for i in sorted(order)),
    ]


def test_update_of_unloaded_object_reads_committed_values(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Expired and deferred attributes are loaded (one query) so the before-state is complete."""
    with Session_.begin() as session:
        customer = Customer(name="Ada", notes="vip")
        session.add(customer)
    with Session_() as session:
        session.expire_all()
        customer = session.get_one(Customer, customer.id)
        session.expire(customer, ["name"])
        customer.name = "Grace"  # set without loading the old value
        session.commit()
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert update.before_state["name"] == "Ada"
    assert update.before_state["notes"] == "vip"  # deferred column, never loaded by the app
    assert update.after_state["name"] == "Grace"
    assert update.after_state["notes"] == "vip"


def test_noop_update_writes_nothing(engine: Engine, Session_: sessionmaker[Session]) -> None:
    with Session_.begin() as session:
        customer = Customer(name="Ada")
        session.add(customer)
    with Session_.begin() as session:
        customer = session.get_one(Customer, customer.id)
        customer.name = "Ada"  # same value
    assert [a for a, _ in actions(engine)] == ["create"]


def test_masked_change_is_an_entry_with_hidden_values(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        customer = Customer(name="Ada", password="one")
        session.add(customer)
    with Session_.begin() as session:
        session.get_one(Customer, customer.id).password = "two"
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert update.before_state["password"] == update.after_state["password"] == auditlog.MASKED
    assert update.changed_fields == ["password"]


def test_excluded_change_alone_is_no_entry(engine: Engine, Session_: sessionmaker[Session]) -> None:
    auditlog.register(Customer, exclude={"email"})
    with Session_.begin() as session:
        customer = Customer(name="Ada", email="a@example.com")
        session.add(customer)
    with Session_.begin() as session:
        session.get_one(Customer, customer.id).email = "b@example.com"
    (create,) = entries(engine)
    assert create.after_state is not None
    assert "email" not in create.after_state


def test_a_flush_that_records_nothing_creates_no_content_type(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """An update of excluded attributes only writes no entry, and so needs no content type:
    none is looked up or created until the model has an entry to write."""
    name = f"{Customer.__module__}.{Customer.__qualname__}"
    has_content_type = sa.select(sa.func.count()).where(ContentType.name == name)
    with engine.begin() as conn:
        conn.execute(sa.delete(ContentType).where(ContentType.name == name))  # earlier tests'
        conn.execute(sa.insert(Customer), [{"id": i, "name": f"c{i}"} for i in (1, 2)])
    content_types.clear_cache()
    auditlog.register(Customer, exclude={"email"})
    with Session_.begin() as session:
        for customer in session.scalars(sa.select(Customer)):
            customer.email = "new@example.com"
    with engine.connect() as conn:
        assert conn.scalar(has_content_type) == 0
    assert entries(engine) == []
    with Session_.begin() as session:
        session.get_one(Customer, 1).name = "renamed"
    (update,) = entries(engine)
    with engine.connect() as conn:
        assert conn.scalar(has_content_type) == 1
    assert update.changed_fields == ["name"]


def test_include_limits_recorded_attributes(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer, include={"id", "name"})
    with Session_.begin() as session:
        customer = Customer(name="Ada", email="a@example.com")
        session.add(customer)
    with Session_.begin() as session:
        customer = session.get_one(Customer, customer.id)
        customer.email = "b@example.com"  # not recorded: no entry
    with Session_.begin() as session:
        session.get_one(Customer, customer.id).name = "Grace"
    create, update = entries(engine)
    assert create.after_state == {"id": customer.id, "name": "Ada"}
    assert update.before_state == {"id": customer.id, "name": "Ada"}
    assert update.after_state == {"id": customer.id, "name": "Grace"}


def test_delete_records_last_stored_values(engine: Engine, Session_: sessionmaker[Session]) -> None:
    with Session_.begin() as session:
        customer = Customer(name="Ada", notes="vip")
        session.add(customer)
    with Session_() as session:
        session.delete(session.get_one(Customer, customer.id))
        session.commit()
    delete = entries(engine, action_type="delete")
    assert len(delete) == 1
    assert delete[0].after_state is None
    assert delete[0].before_state == {
        "id": customer.id,
        "tenant_id": None,
        "name": "Ada",
        "email": None,
        "password": auditlog.MASKED,
        "notes": "vip",
    }


def test_cascaded_orm_delete_gets_an_entry_each(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        customer = Customer(name="Ada", loans=[Loan(amount=Decimal(1)), Loan(amount=Decimal(2))])
        session.add(customer)
    with Session_.begin() as session:
        session.delete(session.get_one(Customer, customer.id))
    deletes = entries(engine, action_type="delete")
    assert sorted(
        e.before_state["amount"] for e in deletes if e.before_state and "amount" in e.before_state
    ) == [
        "1.0000",
        "2.0000",
    ]
    assert len(deletes) == 3


def test_several_flushes_in_one_transaction_get_one_entry_each(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        customer = Customer(name="v1")
        session.add(customer)
        session.flush()
        customer.name = "v2"
        session.flush()
        customer.name = "v3"
        session.flush()
        session.delete(customer)
    rows = entries(engine)
    assert [e.action_type for e in rows] == ["create", "update", "update", "delete"]
    assert [e.after_state and e.after_state["name"] for e in rows] == ["v1", "v2", "v3", None]
    assert rows[1].before_state is not None and rows[1].before_state["name"] == "v1"
    assert len({e.transaction_id for e in rows}) == 1


def test_autoflush_is_captured(engine: Engine, Session_: sessionmaker[Session]) -> None:
    with Session_.begin() as session:
        session.add(Customer(name="Ada"))
        # the query autoflushes the pending object
        assert session.scalar(sa.select(sa.func.count()).select_from(Customer)) == 1
        assert len(entries_in(session)) == 1


def entries_in(session: Session) -> list[AuditLog]:
    return list(session.scalars(sa.select(AuditLog)))


def test_rollback_leaves_no_entries(engine: Engine, Session_: sessionmaker[Session]) -> None:
    with Session_() as session:
        session.add(Customer(name="Ada"))
        session.flush()
        assert len(entries_in(session)) == 1
        session.rollback()
    assert entries(engine) == []


def test_rolled_back_savepoint_leaves_no_entries(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        session.add(Customer(name="kept"))
        savepoint = session.begin_nested()
        session.add(Customer(name="dropped"))
        session.flush()
        savepoint.rollback()
        with session.begin_nested():
            session.add(Customer(name="released"))
    names = sorted(e.after_state["name"] for e in entries(engine) if e.after_state)
    assert names == ["kept", "released"]


def test_composite_primary_key_object_id(engine: Engine, Session_: sessionmaker[Session]) -> None:
    with Session_.begin() as session:
        session.add(Membership(org="acme", member=7, role="admin"))
    (entry,) = entries(engine)
    assert entry.object_id == '["acme",7]'
    assert entry.after_state == {"org": "acme", "member": 7, "role": "admin"}


def test_registering_a_base_covers_joined_subclasses(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        truck = Truck(payload_kg=900)
        session.add_all([truck, Vehicle(kind="vehicle")])
    with Session_.begin() as session:
        session.get_one(Truck, truck.id).payload_kg = 1000
    rows = entries(engine)
    truck_rows = [
        e
        for e in rows
        if e.object_id == str(truck.id) and e.after_state and e.after_state["kind"] == "truck"
    ]
    assert truck_rows[0].after_state == {
        "id": truck.id,
        "kind": "truck",
        "wheels": 4,
        "payload_kg": 900,
    }
    assert truck_rows[1].before_state is not None
    assert truck_rows[1].before_state["payload_kg"] == 900
    assert truck_rows[1].after_state is not None and truck_rows[1].after_state["payload_kg"] == 1000
    assert len({e.content_type for e in rows}) == 2  # Truck and Vehicle are distinct models


def test_unregistered_models_are_not_captured(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.unregister(Customer)
    with Session_.begin() as session:
        session.add(Customer(name="Ada"))
        session.add(Membership(org="a", member=1, role="r"))
    assert [e.object_id for e in entries(engine)] == ['["a",1]']


def test_sql_expression_assignment_records_resulting_value(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        loan = Loan(amount=Decimal("10"))
        session.add(loan)
    with Session_.begin() as session:
        loan = session.get_one(Loan, loan.id)
        loan.version = Loan.version + 1
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["version"], update.after_state["version"]) == (1, 2)


def test_uuid_primary_key_is_object_id_text(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    loan_id = uuid.uuid4()
    with Session_.begin() as session:
        session.add(Loan(id=loan_id, amount=Decimal(1)))
    assert entries(engine)[0].object_id == str(loan_id)


def test_absent_states_are_sql_null(engine: Engine, Session_: sessionmaker[Session]) -> None:
    """A create's before_state (and a missing extra) is SQL NULL, not the JSON value null."""
    with Session_.begin() as session:
        session.add(Customer(name="Ada"))
    table = AuditLog.__table__
    with engine.connect() as conn:
        nulls = conn.execute(
            sa.select(sa.func.count())
            .select_from(table)
            .where(table.c.before_state.is_(None), table.c.extra.is_(None))
        ).scalar_one()
    assert nulls == 1


def test_large_flushes_write_every_entry_exactly(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Batches big enough for the bulk write path (COPY on PostgreSQL) keep every value."""
    with auditlog.audit_context(user_id="batch", ip_address="2001:db8::7", note="n"):
        with Session_.begin() as session:
            customers = [Customer(name=f"c{i}", email=f"{i}@x", password="p") for i in range(40)]
            session.add_all(customers)
        with Session_.begin() as session:
            for customer in customers:
                session.get_one(Customer, customer.id).name = f"renamed {customer.id}"
        with Session_.begin() as session:
            for customer in customers[:20]:
                session.delete(session.get_one(Customer, customer.id))
    rows = entries(engine)
    assert [e.action_type for e in rows] == ["create"] * 40 + ["update"] * 40 + ["delete"] * 20
    by_object = {}
    for e in rows:
        assert (e.user_id, e.ip_address, e.extra) == ("batch", "2001:db8::7", {"note": "n"})
        by_object.setdefault(e.object_id, []).append(e)
    for customer in customers:
        history = by_object[str(customer.id)]
        assert history[0].after_state is not None
        assert history[0].after_state["email"] == f"{customer.id - customers[0].id}@x"
        created = {k: v for k, v in history[0].after_state.items() if k != "loans"}
        assert history[1].before_state == created
        assert history[1].after_state is not None
        assert history[1].after_state["name"] == f"renamed {customer.id}"
        assert history[1].changed_fields == ["name"]
    assert len({e.id for e in rows}) == 100
    assert len({e.transaction_id for e in rows}) == 3


def test_a_failing_large_batch_commits_nothing(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    try:
        with Session_() as session:
            session.add_all([Customer(name=f"c{i}") for i in range(30)])
            with pytest.raises(sa.exc.DBAPIError, match="audit_log"):
                session.commit()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(Customer)) == 0


def test_a_row_another_transaction_deleted_gets_no_second_delete_entry(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add(Customer(id=1, name="Ada"))
    with Session_() as mine:
        customer = mine.get_one(Customer, 1)  # loaded here, deleted elsewhere meanwhile
        with Session_.begin() as theirs:
            theirs.delete(theirs.get_one(Customer, 1))
        mine.delete(customer)
        with pytest.warns(sa.exc.SAWarning, match="0 were matched"):
            mine.commit()
    assert [e.action_type for e in entries(engine)] == ["create", "delete"]


_AWKWARD = {1: 'o\'neil \\ "q"', 2: "007", 3: "[1, 2]", 4: "naïve ☃"}

#: a model of each kind of primary key the rows of a flush are looked up by: (model, new object
#: numbered i, the key of object i)
_KEY_KINDS: dict[str, tuple[type[Any], Callable[[int], Any], Callable[[int], Any]]] = {
    "integer": (Tag, lambda i: Tag(id=i, label=str(i)), lambda i: i),
    "string": (Course, lambda i: Course(code=f"c{i}"), lambda i: f"c{i}"),
    # looked up through a JSON array on SQLite: quotes, escapes and digits must survive it
    "awkward string": (Course, lambda i: Course(code=_AWKWARD[i]), lambda i: _AWKWARD[i]),
    "uuid": (
        Loan,
        lambda i: Loan(id=uuid.UUID(int=i), amount=Decimal(1)),
        lambda i: uuid.UUID(int=i),
    ),
    "composite": (
        Membership,
        lambda i: Membership(org="acme", member=i, role="r"),
        lambda i: ("acme", i),
    ),
}


@pytest.mark.parametrize("kind", list(_KEY_KINDS))
def test_of_rows_deleted_together_only_the_one_still_there_gets_an_entry(
    engine: Engine, Session_: sessionmaker[Session], kind: str
) -> None:
    model, make, key = _KEY_KINDS[kind]
    auditlog.register(model)
    with Session_.begin() as session:
        session.add_all([make(1), make(2)])
    with Session_() as mine:
        both = [mine.get_one(model, key(1)), mine.get_one(model, key(2))]
        with Session_.begin() as theirs:
            theirs.delete(theirs.get_one(model, key(1)))
        for obj in both:
            mine.delete(obj)
        with pytest.warns(sa.exc.SAWarning, match="1 were matched"):
            mine.commit()
    created = {e.object_id for e in entries(engine, action_type="create")}
    deletes = sorted(e.object_id for e in entries(engine, action_type="delete"))
    assert deletes == sorted(created)  # one by theirs, one by mine: one entry each


def test_objects_deleted_together_are_found_by_any_text_key(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """The rows of a flush's deletes are looked up by key in one query (through a JSON array on
    SQLite): keys with quotes, backslashes, brackets, digits or non-ASCII text all match."""
    auditlog.register(Course)
    with Session_.begin() as session:
        session.add_all([Course(code=code) for code in _AWKWARD.values()])
    with Session_.begin() as session:
        for course in session.scalars(sa.select(Course)).all():
            session.delete(course)
    deletes = sorted(e.object_id for e in entries(engine, action_type="delete"))
    assert deletes == sorted(_AWKWARD.values())
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(Course)) == 0


def test_a_text_key_with_a_nul_character_is_found(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """NUL ends a string in SQLite's ``json_each``: such keys are looked up another way."""
    if engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL's text cannot hold NUL")
    auditlog.register(Course)
    codes = ["a\x00b", "a", "zz"]
    with Session_.begin() as session:
        session.add_all([Course(code=code) for code in codes])
    with Session_.begin() as session:
        doomed = [session.get_one(Course, "a\x00b"), session.get_one(Course, "zz")]
        for course in doomed:
            session.delete(course)
    deletes = sorted(e.object_id for e in entries(engine, action_type="delete"))
    assert deletes == ["a\x00b", "zz"]


def test_a_key_whose_type_has_a_variant_is_looked_up_through_it(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """A key column typed ``String().with_variant(SomeTypeDecorator(), "sqlite")`` stores
    what the decorator makes of the value: the lookup binds the keys through it."""
    auditlog.register(Badge)
    with Session_.begin() as session:
        session.add_all([Badge(code=code) for code in ("gold", "silver", "bronze")])
    with Session_.begin() as session:
        for badge in session.scalars(sa.select(Badge)).all():
            session.delete(badge)
    deletes = sorted(e.object_id for e in entries(engine, action_type="delete"))
    assert deletes == ["bronze", "gold", "silver"]


@pytest.mark.parametrize("count", [1, 3])
def test_a_row_a_trigger_keeps_from_a_flushs_delete_gets_no_entry(
    engine: Engine,
    Session_: sessionmaker[Session],
    rows_kept_from_delete: Callable[[Any], Any],
    count: int,
) -> None:
    """A trigger that skips a row (``RETURN NULL``, ``RAISE(IGNORE)``) leaves it in the table:
    the flush's entries are for the rows it removed, whether it deletes one or several."""
    if engine.dialect.name == "mariadb":
        pytest.skip("MariaDB's triggers cannot skip a row")
    auditlog.register(Customer)
    names = ["keep", "go", "go"][:count]
    with Session_.begin() as session:
        session.add_all([Customer(id=i, name=name) for i, name in enumerate(names, 1)])
    with Session_() as session, session.no_autoflush:  # one flush: the commit's
        for customer in session.scalars(sa.select(Customer)).all():
            session.delete(customer)  # loads its loans first
        with pytest.warns(sa.exc.SAWarning, match=f"{count - 1} were matched"):
            session.commit()
    deleted = sorted(e.object_id for e in entries(engine, action_type="delete"))
    assert deleted == [str(i) for i in range(2, count + 1)]
    with engine.connect() as conn:
        assert conn.scalar(sa.select(Customer.id)) == 1


def test_a_row_a_trigger_keeps_is_found_among_rows_of_other_classes(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """The base table's DELETE counts every class's rows: a subclass's row (joined
    inheritance) deleted in the same flush does not hide the row a trigger kept."""
    if engine.dialect.name == "mariadb":
        pytest.skip("MariaDB's triggers cannot skip a row")
    auditlog.register(Vehicle)
    with Session_.begin() as session:
        session.add_all([Vehicle(id=1, wheels=3), Vehicle(id=2), Truck(id=3)])
    with rows_kept(engine, "vehicle", "OLD.wheels = 3"), Session_() as session:
        for vehicle in session.scalars(sa.select(Vehicle)).all():
            session.delete(vehicle)
        with pytest.warns(sa.exc.SAWarning, match="were matched"):
            session.commit()
    assert sorted(e.object_id for e in entries(engine, action_type="delete")) == ["2", "3"]


def test_deleting_one_object_adds_no_statement_but_the_entry(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Tag)
    with Session_.begin() as session:
        session.add(Tag(id=1, label="stored"))
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split(None, 1)[0])

    with Session_() as session:
        tag = session.get_one(Tag, 1)
        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            session.delete(tag)
            session.commit()
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)
    # the DELETE's row count tells whether the row was there: no locking read before it
    assert statements == ["DELETE", "INSERT"]
    assert actions(engine) == [("create", "1"), ("delete", "1")]


def test_a_delete_records_the_row_as_stored_not_unflushed_changes(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Tag)
    with Session_.begin() as session:
        session.add(Tag(id=1, label="stored"))
    with Session_.begin() as session:
        tag = session.get_one(Tag, 1)
        tag.label = "never stored"
        session.delete(tag)
    assert [(e.action_type, e.before_state) for e in entries(engine)][-1] == (
        "delete",
        {"id": 1, "label": "stored"},
    )


def test_a_new_object_given_its_key_during_the_flush_is_still_a_create(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Draft)
    with Session_.begin() as session:
        session.add_all([Draft(id=1, title="a"), Draft(id=2, title="b")])
    with Session_.begin() as session:
        session.get_one(Draft, 1).title = "a2"
    log = [(e.action_type, e.object_id) for e in entries(engine)]
    assert log == [("create", "1"), ("create", "2"), ("update", "1")]
    first = entries(engine)[0]
    assert first.before_state is None
    assert first.after_state == {"id": 1, "title": "a", "status": "draft"}


def test_an_orphan_deleted_by_its_collection_has_its_whole_before_state(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Sailor)
    with Session_.begin() as session:
        session.add(Crew(id=1, sailors=[Sailor(id=7, logbook="day one")]))
    with Session_.begin() as session:
        crew = session.get_one(Crew, 1)
        crew.sailors.remove(crew.sailors[0])  # its deferred logbook never loaded
    (deleted,) = entries(engine, action_type="delete")
    assert deleted.before_state == {"id": 7, "crew_id": 1, "logbook": "day one"}
