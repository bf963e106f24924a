"""Every write path through a Session leaves entries with real before and after states."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..helpers import entries
from ..models import (
    Account,
    Animal,
    Article,
    Book,
    Course,
    Customer,
    Document,
    Dog,
    Employee,
    Enrollment,
    Loan,
    Manager,
    Mentoring,
    Shelf,
    Shelving,
    Student,
    Tag,
    Ticket,
)


def states(engine: Engine, action: str) -> list[tuple[str, object, object]]:
    return [
        (e.object_id, e.before_state, e.after_state) for e in entries(engine, action_type=action)
    ]


# --- objects whose stored values the database decides -------------------------------------------


def test_server_defaults_computed_and_onupdate_values_are_real(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Article)
    with Session_.begin() as session:
        article = Article(title="a", price=3, qty=2)
        session.add(article)
    with Session_.begin() as session:
        session.get_one(Article, article.id).qty = 5
    (create,) = entries(engine, action_type="create")
    assert create.after_state == {
        "id": article.id,
        "title": "a",
        "price": 3,
        "qty": 2,
        "total": 6,  # computed by the database
        "revision": 0,  # server default
        "tags": [],
    }
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["total"], update.after_state["total"]) == (6, 15)
    assert (update.before_state["revision"], update.after_state["revision"]) == (0, 1)  # onupdate
    assert update.changed_fields == ["qty", "total", "revision"]


def test_in_place_change_of_mutable_json_keeps_the_old_value(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Document)
    with Session_.begin() as session:
        doc = Document(data={"status": "draft", "n": 1}, items=["a"])
        session.add(doc)
    with Session_.begin() as session:
        loaded = session.get_one(Document, doc.id)
        loaded.data["status"] = "final"
        loaded.items.append("b")
    (update,) = entries(engine, action_type="update")
    assert update.before_state == {
        "id": doc.id,
        "data": {"status": "draft", "n": 1},
        "items": ["a"],
    }
    assert update.after_state == {
        "id": doc.id,
        "data": {"status": "final", "n": 1},
        "items": ["a", "b"],
    }


def test_one_to_many_collection_changes_are_recorded_on_the_parent(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    auditlog.register(Loan)
    with Session_.begin() as session:
        first = Loan(amount=Decimal(1))
        customer = Customer(name="Ada", loans=[first])
        session.add(customer)
    with Session_.begin() as session:
        customer = session.get_one(Customer, customer.id)
        second = Loan(amount=Decimal(2))
        customer.loans.append(second)
    create = next(
        e for e in entries(engine, action_type="create") if e.object_id == str(customer.id)
    )
    assert create.after_state is not None and create.after_state["loans"] == [str(first.id)]
    parent_update = [
        e for e in entries(engine, action_type="update") if e.object_id == str(customer.id)
    ]
    assert len(parent_update) == 1
    assert parent_update[0].before_state is not None and parent_update[0].after_state is not None
    assert parent_update[0].before_state["loans"] == [str(first.id)]
    assert parent_update[0].after_state["loans"] == sorted([str(first.id), str(second.id)])
    assert parent_update[0].changed_fields == ["loans"]
    # the child records its foreign key
    child = next(e for e in entries(engine, action_type="create") if e.object_id == str(second.id))
    assert child.after_state is not None and child.after_state["customer_id"] == customer.id


def test_many_to_many_collection_changes_are_recorded(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Article)
    with Session_.begin() as session:
        red, blue = Tag(id=1, label="red"), Tag(id=2, label="blue")
        article = Article(title="t", tags=[red])
        session.add_all([article, blue])
    with Session_.begin() as session:
        article = session.get_one(Article, article.id)
        blue = session.get_one(Tag, 2)
        article.tags.remove(article.tags[0])
        article.tags.append(blue)
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["tags"], update.after_state["tags"]) == (["1"], ["2"])


def test_single_table_inheritance(engine: Engine, Session_: sessionmaker[Session]) -> None:
    auditlog.register(Animal)
    with Session_.begin() as session:
        session.add(Dog(name="Rex", good_boy=True))
    (create,) = entries(engine)
    assert create.after_state == {
        "id": create.after_state["id"],
        "type": "dog",
        "name": "Rex",
        "good_boy": True,
    }  # type: ignore[index]


def test_concrete_inheritance(engine: Engine, Session_: sessionmaker[Session]) -> None:
    auditlog.register(Employee)
    with Session_.begin() as session:
        session.add_all([Manager(id=1, name="Grace", reports=3), Employee(id=2, name="Ada")])
    created = sorted(states(engine, "create"), key=lambda s: s[0])
    assert created[0][2] == {"id": 1, "name": "Grace", "reports": 3}
    assert created[1][2] == {"id": 2, "name": "Ada"}


def test_merge_of_a_detached_object_records_the_update(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add(Customer(id=5, name="Ada", email="a@x"))
    with Session_.begin() as session:
        session.merge(Customer(id=5, name="Ada Lovelace", email="a@x"))
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("Ada", "Ada Lovelace")


def test_created_and_deleted_in_one_transaction(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        customer = Customer(name="brief")
        session.add(customer)
        session.flush()
        session.delete(customer)
    assert [e.action_type for e in entries(engine)] == ["create", "delete"]


# --- ORM-enabled statements ---------------------------------------------------------------------


@pytest.fixture
def three_customers(Session_: sessionmaker[Session]) -> list[int]:
    auditlog.register(Customer)
    with Session_.begin() as session:
        rows = [Customer(name=f"c{i}", email=f"{i}@x", tenant_id="t") for i in range(3)]
        session.add_all(rows)
    return [c.id for c in rows]


def test_update_statement_records_each_row(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    with auditlog.audit_context(user_id="bulk"), Session_.begin() as session:
        result = session.execute(
            sa.update(Customer).where(Customer.name != "c1").values(email="changed@x")
        )
        assert result.rowcount == 2  # type: ignore[attr-defined]
    updates = entries(engine, action_type="update")
    assert sorted(e.object_id for e in updates) == sorted(
        str(i) for i in (three_customers[0], three_customers[2])
    )
    for e in updates:
        assert e.user_id == "bulk"
        assert e.before_state is not None and e.after_state is not None
        assert e.before_state["email"] == f"{e.before_state['name'][1]}@x"
        assert e.after_state["email"] == "changed@x"
        assert e.changed_fields == ["email"]


def test_update_statement_with_sql_expression_and_synchronize(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    with Session_.begin() as session:
        customer = session.get_one(Customer, three_customers[0])
        session.execute(
            sa.update(Customer)
            .where(Customer.id == three_customers[0])
            .values(name=Customer.name + "!")
            .execution_options(synchronize_session="fetch")
        )
        assert customer.name == "c0!"
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("c0", "c0!")


def test_delete_statement_records_each_row(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    with Session_.begin() as session:
        session.execute(sa.delete(Customer).where(Customer.tenant_id == "t"))
    deletes = entries(engine, action_type="delete")
    assert sorted(e.object_id for e in deletes) == sorted(str(i) for i in three_customers)
    assert all(e.after_state is None and e.before_state for e in deletes)


def test_rolled_back_statement_leaves_no_entries(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    with Session_() as session:
        session.execute(sa.delete(Customer))
        session.rollback()
    assert [e.action_type for e in entries(engine)] == ["create"] * 3


# --- statements after pending changes: the autoflush runs first, as SQLAlchemy runs it -----------


def test_a_statement_after_a_pending_change_records_the_row_the_autoflush_left(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    first = three_customers[0]
    with Session_.begin() as session:
        session.get_one(Customer, first).name = "pending"
        session.execute(sa.delete(Customer).where(Customer.id == first))
    (update,) = entries(engine, action_type="update")
    (delete,) = entries(engine, action_type="delete")
    assert update.after_state is not None and update.after_state["name"] == "pending"
    assert delete.before_state is not None and delete.before_state["name"] == "pending"


def test_a_statement_matching_a_pending_new_object_records_it(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    with Session_.begin() as session:
        session.add(Customer(id=100, name="new", email="new@x", tenant_id="t"))
        result = session.execute(
            sa.update(Customer).where(Customer.tenant_id == "t").values(email="all@x")
        )
        assert result.rowcount == 4  # type: ignore[attr-defined]
    updates = entries(engine, action_type="update")
    assert sorted(int(e.object_id) for e in updates) == sorted([*three_customers, 100])
    assert {(e.before_state or {}).get("email") for e in updates} == {"0@x", "1@x", "2@x", "new@x"}


def test_a_statement_a_pending_change_leaves_without_rows_records_nothing(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    with Session_.begin() as session:
        session.get_one(Customer, three_customers[0]).name = "moved"
        result = session.execute(
            sa.update(Customer).where(Customer.name == "c0").values(email="never@x")
        )
        assert result.rowcount == 0  # type: ignore[attr-defined]
    (update,) = entries(engine, action_type="update")  # the flush's, of the name
    assert update.changed_fields == ["name"]


@pytest.mark.parametrize("how", ["execution option", "no_autoflush"])
def test_a_statement_without_autoflush_leaves_pending_changes_pending(
    how: str, engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    statement = sa.update(Customer).where(Customer.tenant_id == "t").values(email="all@x")
    with Session_.begin() as session:
        session.add(Customer(id=100, name="new", email="new@x", tenant_id="t"))
        if how == "no_autoflush":
            with session.no_autoflush:
                result = session.execute(statement)
        else:
            result = session.execute(statement.execution_options(autoflush=False))
        assert result.rowcount == 3  # type: ignore[attr-defined]
    updates = entries(engine, action_type="update")
    assert sorted(int(e.object_id) for e in updates) == sorted(three_customers)
    (created,) = [e for e in entries(engine, action_type="create") if e.object_id == "100"]
    assert created.after_state is not None and created.after_state["email"] == "new@x"


def test_bulk_update_by_primary_key(
    engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    with Session_.begin() as session:
        session.execute(
            sa.update(Customer),
            [{"id": three_customers[0], "name": "x0"}, {"id": three_customers[1], "name": "x1"}],
        )
    updates = sorted(states(engine, "update"), key=lambda s: s[0])
    assert [(b["name"], a["name"]) for _, b, a in updates] == [("c0", "x0"), ("c1", "x1")]  # type: ignore[index]


def test_insert_statement_single_and_executemany(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.execute(sa.insert(Customer).values(name="single"))
        session.execute(sa.insert(Customer), [{"name": "many-1"}, {"name": "many-2", "email": "e"}])
    created = entries(engine, action_type="create")
    assert sorted(e.after_state["name"] for e in created if e.after_state) == [
        "many-1",
        "many-2",
        "single",
    ]
    for e in created:
        assert e.after_state is not None and e.object_id == str(e.after_state["id"])


def test_insert_statement_keeps_the_callers_returning(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        names = session.scalars(
            sa.insert(Customer).returning(Customer.name), [{"name": "r1"}, {"name": "r2"}]
        ).all()
    assert sorted(names) == ["r1", "r2"]
    assert len(entries(engine, action_type="create")) == 2


def test_upsert_records_creates_and_updates_with_real_before_states(
    backend: str, engine: Engine, Session_: sessionmaker[Session], three_customers: list[int]
) -> None:
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.mysql import insert
    rows = [{"id": three_customers[0], "name": "upserted"}, {"id": 999, "name": "brand new"}]
    stmt = insert(Customer).values(rows)
    if backend == "mariadb":
        stmt = stmt.on_duplicate_key_update(name=stmt.inserted.name)
    else:
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={"name": stmt.excluded.name})
    with Session_.begin() as session:
        session.execute(stmt)
    (update,) = entries(engine, action_type="update")
    assert update.object_id == str(three_customers[0])
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("c0", "upserted")
    assert update.after_state["email"] == "0@x"
    creates = [e for e in entries(engine, action_type="create") if e.object_id == "999"]
    assert len(creates) == 1 and creates[0].after_state is not None
    assert creates[0].after_state["name"] == "brand new"


def test_statements_on_unregistered_models_are_untouched(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        session.execute(sa.insert(Tag), [{"id": 1, "label": "x"}])
        session.execute(sa.update(Tag).values(label="y"))
        result = session.execute(sa.delete(Tag))
        assert result.rowcount == 1  # type: ignore[attr-defined]
    assert entries(engine) == []


# --- attribute names that differ from column names ----------------------------------------------


@pytest.fixture
def account(Session_: sessionmaker[Session]) -> Account:
    auditlog.register(Account)
    with Session_.begin() as session:
        acct = Account(ident=1, code="a", name="first")
        session.add(acct)
    return acct


def test_statement_changing_a_differently_named_primary_key_names_the_new_key(
    engine: Engine, Session_: sessionmaker[Session], account: Account
) -> None:
    with Session_.begin() as session:
        session.execute(sa.update(Account).where(Account.ident == 1).values(ident=2, name="b"))
    (update,) = entries(engine, action_type="update")
    assert (update.object_id, update.renamed_to) == ("1", "2")
    assert update.after_state is not None
    assert (update.after_state["ident"], update.after_state["name"]) == (2, "b")
    with engine.connect() as conn:
        assert conn.scalar(sa.select(Account.__table__.c.id)) == 2


def test_upsert_on_a_differently_named_unique_column_keeps_the_before_state(
    backend: str, engine: Engine, Session_: sessionmaker[Session], account: Account
) -> None:
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.mysql import insert
    stmt = insert(Account).values(ident=99, code="a", name="upserted")
    if backend == "mariadb":
        stmt = stmt.on_duplicate_key_update(name=stmt.inserted.name)
    else:
        stmt = stmt.on_conflict_do_update(index_elements=[Account.code], set_={"name": "upserted"})
    with Session_.begin() as session:
        session.execute(stmt)
    (update,) = entries(engine, action_type="update")
    assert update.object_id == "1"
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["name"], update.after_state["name"]) == ("first", "upserted")


def test_primary_key_change_through_the_unit_of_work_reads_server_values_by_the_new_key(
    engine: Engine, Session_: sessionmaker[Session], account: Account
) -> None:
    with Session_.begin() as session:
        session.get_one(Account, 1).ident = 2
    (update,) = entries(engine, action_type="update")
    assert update.before_state is not None and update.after_state is not None
    assert (update.before_state["ident"], update.after_state["ident"]) == (1, 2)
    assert (update.before_state["rev"], update.after_state["rev"]) == (0, 1)


def test_large_statements_read_rows_in_chunks(
    engine: Engine, Session_: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auditlog.capture.rows, "LOAD_CHUNK", 7)
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.execute(sa.insert(Customer), [{"name": f"n{i}"} for i in range(30)])
    with Session_.begin() as session:
        session.execute(sa.update(Customer).values(email="all@x"))
    updates = entries(engine, action_type="update")
    assert len(updates) == 30
    assert all(e.after_state and e.after_state["email"] == "all@x" for e in updates)


def test_child_detached_by_a_parent_delete_keeps_its_unloaded_values(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """The child's foreign key is nulled during the flush; its deferred column stays real."""
    auditlog.register(Loan)
    with Session_.begin() as session:
        customer = Customer(name="parent")
        session.add(customer)
        session.flush()
        session.add(Loan(amount=Decimal(5), customer_id=customer.id, status="kept"))
    with Session_() as session:
        parent = session.get_one(Customer, customer.id)
        session.expire_all()
        parent = session.get_one(Customer, customer.id)
        Customer.loans.property.cascade = sa.orm.CascadeOptions("save-update, merge")  # type: ignore[assignment]
        try:
            session.delete(parent)
            session.commit()
        finally:
            Customer.loans.property.cascade = sa.orm.CascadeOptions("all, delete")  # type: ignore[assignment]
    updates = entries(engine, action_type="update")
    assert len(updates) == 1
    assert updates[0].before_state is not None and updates[0].after_state is not None
    assert updates[0].before_state["customer_id"] == customer.id
    assert updates[0].after_state["customer_id"] is None
    assert updates[0].after_state["status"] == "kept"


def test_identity_primary_keys_are_the_stored_values(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Ticket)
    with Session_.begin() as session:
        tickets = [Ticket(title="a"), Ticket(title="b")]
        session.add_all(tickets)
    with Session_.begin() as session:
        session.execute(sa.insert(Ticket), [{"title": "c"}])
    created = entries(engine, action_type="create")
    with engine.connect() as conn:
        stored = dict(
            conn.execute(sa.select(Ticket.__table__.c.title, Ticket.__table__.c.id)).all()
        )
    assert {e.after_state["title"]: e.after_state["id"] for e in created if e.after_state} == stored
    assert {e.object_id for e in created} == {str(i) for i in stored.values()}


def test_association_rows_written_by_a_secondary_collection_get_their_own_entries(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """A class mapped to a secondary= table is audited when the collection writes its rows."""
    auditlog.register(Enrollment)
    with Session_.begin() as session:
        session.add_all([Course(code="math"), Course(code="art")])
        session.add(Student(id=1, name="Ada"))
    with Session_.begin() as session:
        student = session.get_one(Student, 1)
        student.courses.extend([session.get_one(Course, "math"), session.get_one(Course, "art")])
    with Session_.begin() as session:
        session.execute(sa.update(Enrollment).where(Enrollment.course == "art").values(grade="A"))
    with Session_.begin() as session:
        student = session.get_one(Student, 1)
        student.courses.remove(session.get_one(Course, "art"))
    with Session_.begin() as session:
        session.delete(session.get_one(Student, 1))  # its remaining row goes with it
    log = [(e.action_type, e.object_id, e.before_state, e.after_state) for e in entries(engine)]
    math = {"student_id": 1, "course": "math", "grade": None}
    art = {"student_id": 1, "course": "art", "grade": None}
    graded = {**art, "grade": "A"}
    assert sorted(log[:2], key=str) == sorted(
        [("create", '[1,"math"]', None, math), ("create", '[1,"art"]', None, art)], key=str
    )
    assert log[2:] == [
        ("update", '[1,"art"]', art, graded),
        ("delete", '[1,"art"]', graded, None),
        ("delete", '[1,"math"]', math, None),
    ]


def test_association_rows_with_a_surrogate_key_are_found_by_their_criteria(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Mentoring)
    with Session_.begin() as session:
        courses = [Course(code="math"), Course(code="art")]
        session.add(Student(id=1, name="Ada", mentored=courses))
    with Session_.begin() as session:
        session.get_one(Student, 1).mentored = []  # both rows, in one executemany DELETE
    log = [(e.action_type, e.before_state or e.after_state) for e in entries(engine)]
    assert sorted(log, key=str) == sorted(
        [
            (action, {"id": key, "student_id": 1, "course": code})
            for action in ("create", "delete")
            for key, code in ((1, "math"), (2, "art"))
        ],
        key=str,
    )


def test_association_rows_moved_to_a_parents_new_key_name_the_new_key(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """With ``passive_updates=False`` SQLAlchemy itself updates the secondary rows of a parent
    whose key changed: each row's entry is an update under its old key, naming the new."""
    auditlog.register(Shelving)
    with Session_.begin() as session:
        session.add(Shelf(code="a", books=[Book(id=1), Book(id=2)]))
    with Session_.begin() as session:
        session.get_one(Shelf, "a").code = "z"
    log = [(e.action_type, e.object_id, e.renamed_to) for e in entries(engine)]
    assert sorted(log) == [
        ("create", '["a",1]', None),
        ("create", '["a",2]', None),
        ("update", '["a",1]', '["z",1]'),
        ("update", '["a",2]', '["z",2]'),
    ]
