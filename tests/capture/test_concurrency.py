"""Many threads writing at once: the log matches exactly the committed changes, actor by actor."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog.capture import content_types
from auditlog.registry import plan_for

from ..helpers import entries
from ..models import Customer, Membership

THREADS = 8
TRANSACTIONS = 120

Expected = tuple[str, str, Any, Any]  # action, user, before name, after name


def _worker(
    maker: sessionmaker[Session], n: int, out: list[Expected], errors: list[BaseException]
) -> None:
    rng = random.Random(n)
    user = f"user-{n}"
    mine: dict[int, str] = {}  # committed id -> name
    try:
        with auditlog.audit_context(user_id=user, tenant_id=f"tenant-{n % 3}"):
            for i in range(TRANSACTIONS):
                session = maker()
                pending: list[Expected] = []
                state = dict(mine)
                try:
                    for step in range(rng.randint(1, 4)):
                        choice = rng.random()
                        in_savepoint = rng.random() < 0.25
                        savepoint = session.begin_nested() if in_savepoint else None
                        step_log: list[Expected] = []
                        step_state = dict(state)
                        if choice < 0.45 or not step_state:
                            customer = Customer(name=f"{user}-{i}-{step}", tenant_id=user)
                            session.add(customer)
                            session.flush()
                            step_state[customer.id] = customer.name
                            step_log.append(("create", user, None, customer.name))
                        elif choice < 0.8:
                            cid = rng.choice(sorted(step_state))
                            customer = session.get_one(Customer, cid)
                            new = f"{user}-{i}-{step}-u"
                            customer.name = new
                            session.flush()
                            step_log.append(("update", user, step_state[cid], new))
                            step_state[cid] = new
                        else:
                            cid = rng.choice(sorted(step_state))
                            session.delete(session.get_one(Customer, cid))
                            session.flush()
                            step_log.append(("delete", user, step_state.pop(cid), None))
                        if savepoint is not None and rng.random() < 0.5:
                            savepoint.rollback()
                            continue
                        if savepoint is not None:
                            savepoint.commit()
                        pending += step_log
                        state = step_state
                    if rng.random() < 0.2:
                        session.rollback()
                    else:
                        session.commit()
                        out.extend(pending)
                        mine = state
                finally:
                    session.close()
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
def test_concurrent_writers_log_exactly_the_committed_changes(engine: Engine) -> None:
    auditlog.register(Customer)
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    expected: list[Expected] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_worker, args=(maker, n, expected, errors)) for n in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    logged = [
        (
            e.action_type,
            e.user_id,
            e.before_state and e.before_state["name"],
            e.after_state and e.after_state["name"],
        )
        for e in entries(engine)
    ]
    assert len(logged) == len(expected) > THREADS * TRANSACTIONS // 2
    assert Counter(logged) == Counter(expected)
    # every committed row's last entry is its current state; every deleted row ends with a delete
    with engine.connect() as conn:
        current = {row[0]: row[1] for row in conn.execute(sa.select(Customer.id, Customer.name))}
    last: dict[str, Any] = {}
    for e in entries(engine):
        last[e.object_id] = e.after_state and e.after_state["name"]
    assert {k: v for k, v in last.items() if v is not None} == {
        str(k): v for k, v in current.items()
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_content_type_created_once_when_many_writers_race(engine: Engine) -> None:
    """Every writer resolving a never-seen model at the same moment gets the same id."""
    auditlog.register(Customer)
    plan = plan_for(sa.inspect(Customer))
    assert plan is not None
    racing = type(plan)(**{**plan.__dict__, "content_type_name": "tests.Racing"})
    with engine.begin() as conn:
        conn.execute(
            sa.delete(auditlog.ContentType.__table__).where(
                auditlog.ContentType.__table__.c.name == "tests.Racing"
            )
        )
    content_types.clear_cache()
    barrier = threading.Barrier(6)
    ids: list[int] = []
    errors: list[BaseException] = []

    def resolve() -> None:
        try:
            with Session(engine) as session:
                connection = session.connection()
                barrier.wait()
                ids.append(content_types.content_type_id(session, connection, racing))
                session.commit()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=resolve) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert len(set(ids)) == 1
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(auditlog.ContentType.__table__.c.id).where(
                auditlog.ContentType.__table__.c.name == "tests.Racing"
            )
        ).all()
    assert [r[0] for r in rows] == ids[:1]


def test_content_type_from_a_rolled_back_transaction_is_not_cached(engine: Engine) -> None:
    """Releasing a savepoint, or committing a session inside an outer transaction, is no
    database commit: an id created there must not outlive the outer rollback."""
    auditlog.register(Customer)
    maker = sessionmaker(engine)
    auditlog.enable(maker)

    def forget() -> None:
        with engine.begin() as conn:
            conn.execute(sa.delete(auditlog.AuditLog.__table__))
            conn.execute(sa.delete(auditlog.ContentType.__table__))
            conn.execute(sa.delete(Customer.__table__))
        content_types.clear_cache()

    forget()
    session = maker()
    session.begin()
    with session.begin_nested():  # first use of Customer: its content type row is inserted here
        session.add(Customer(name="in savepoint"))
    session.rollback()
    with maker.begin() as later:  # would fail on the foreign key with a stale cached id
        later.add(Customer(name="later"))

    forget()
    with engine.connect() as conn:
        outer = conn.begin()
        joined = Session(conn, join_transaction_mode="create_savepoint")
        auditlog.enable(joined)
        joined.add(Customer(name="joined"))
        joined.commit()
        joined.close()
        outer.rollback()
    with maker.begin() as later:
        later.add(Customer(name="after the outer rollback"))
    # the log matches the data (pysqlite releases a SAVEPOINT opened outside BEGIN as a commit,
    # so on SQLite "joined" stays, with its entry)
    with engine.connect() as conn:
        names = sorted(conn.scalars(sa.select(Customer.__table__.c.name)))
    assert sorted(e.after_state["name"] for e in entries(engine) if e.after_state) == names
    assert "after the outer rollback" in names


def test_a_read_after_the_commit_leaves_the_content_type_cached(engine: Engine) -> None:
    """An application that reads its object after committing (an expired attribute, loaded in
    a new transaction that ends with a rollback) keeps the id cached: the next audited
    transaction does not look it up again."""
    auditlog.register(Customer)
    maker = sessionmaker(engine)
    auditlog.enable(maker)
    content_types.clear_cache()
    with maker() as session:
        customer = Customer(name="first")
        session.add(customer)
        session.commit()
        assert customer.name == "first"  # a refresh in a new transaction, rolled back on close
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        with maker.begin() as session:
            session.add(Customer(name="second"))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert [s for s in statements if "audit_content_type" in s] == []
    assert len({e.content_type for e in entries(engine)}) == 1


def test_content_type_of_a_failed_commit_is_not_cached(engine: Engine, backend: str) -> None:
    """The commit event comes before the COMMIT: an id created in a transaction whose COMMIT
    then fails (here a deferred constraint) must not stay cached for later entries."""
    if backend == "mariadb":
        pytest.skip("MariaDB checks every constraint at once: its COMMIT does not fail this way")
    auditlog.register(Customer)
    auditlog.register(Membership)
    maker = sessionmaker(engine)
    auditlog.enable(maker)
    with engine.begin() as conn:
        conn.execute(sa.delete(auditlog.AuditLog.__table__))
        conn.execute(sa.delete(auditlog.ContentType.__table__))
        conn.exec_driver_sql(
            "CREATE TABLE commit_check (id INTEGER PRIMARY KEY, parent INTEGER "
            "REFERENCES commit_check (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    content_types.clear_cache()
    try:
        with maker() as session:
            session.add(Customer(name="never committed"))  # Customer's content type is new
            session.execute(sa.text("INSERT INTO commit_check (id, parent) VALUES (1, 2)"))
            with pytest.raises(sa.exc.IntegrityError):
                session.commit()  # the deferred foreign key fails the COMMIT itself
            session.rollback()
        with maker.begin() as other:  # may take the id the lost row had
            other.add(Membership(org="o", member=1, role="r"))
        with maker.begin() as later:  # a stale id: a foreign key error, or the wrong model
            later.add(Customer(name="later"))
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE commit_check")
    names = {(e.after_state or {}).get("name"): e.content_type for e in entries(engine)}
    with engine.connect() as conn:
        customer_type = conn.scalar(
            sa.select(auditlog.ContentType.id).where(
                auditlog.ContentType.name == plan_for(sa.inspect(Customer)).content_type_name  # type: ignore[union-attr]
            )
        )
    assert set(names) == {None, "later"}  # the membership's state has no name
    assert names["later"] == customer_type


def test_ids_left_in_a_pooled_connection_by_an_earlier_transaction_are_ignored(
    engine: Engine,
) -> None:
    """connection.info outlives transactions: an id noted in one that ended unseen (no commit
    or rollback event reached auditlog) must not be taken for the next one's."""
    import weakref

    auditlog.register(Customer)
    plan = plan_for(sa.inspect(Customer))
    assert plan is not None
    content_types.clear_cache()
    with engine.connect() as conn:
        old = conn.begin()
        old.rollback()
        conn.info["auditlog.pending_content_types"] = (
            weakref.ref(old),
            {plan.content_type_name: 999_999},
        )
        with conn.begin():
            found = content_types.content_type_id(Session(), conn, plan)
        assert found != 999_999
        assert (
            conn.scalar(
                sa.select(auditlog.ContentType.id).where(
                    auditlog.ContentType.name == plan.content_type_name
                )
            )
            == found
        )
