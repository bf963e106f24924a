"""If an audit entry cannot be written, the flush fails and the change is not committed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..helpers import entries
from ..models import Customer


@pytest.fixture(autouse=True)
def _registered() -> None:
    auditlog.register(Customer)


def customers(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.select(Customer.__table__.c.name)))


@pytest.fixture
def audit_table_missing(engine: Engine) -> Iterator[None]:
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit_log_away RENAME TO audit_log"))


def test_missing_audit_table_fails_the_flush_and_commits_nothing(
    engine: Engine, Session_: sessionmaker[Session], audit_table_missing: None
) -> None:
    with Session_() as session:
        session.add(Customer(name="unaudited"))
        with pytest.raises(sa.exc.DBAPIError, match="audit_log"):
            session.commit()
    assert customers(engine) == []


@pytest.fixture
def audit_insert_rejected(backend: str, engine: Engine) -> Iterator[None]:
    """A constraint on audit_log that refuses entries by the user 'forbidden'."""
    trigger = f"refuse_forbidden_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        if backend == "sqlite":
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER {trigger} BEFORE INSERT ON audit_log "
                    "WHEN NEW.user_id = 'forbidden' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by constraint'); END"
                )
            )
        else:
            conn.execute(
                sa.text(
                    "ALTER TABLE audit_log ADD CONSTRAINT ck_refuse_forbidden "
                    "CHECK (user_id <> 'forbidden')"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            if backend == "sqlite":
                conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {trigger}"))
            else:
                conn.execute(sa.text("ALTER TABLE audit_log DROP CONSTRAINT ck_refuse_forbidden"))


def test_violated_constraint_fails_the_flush_and_commits_nothing(
    engine: Engine, Session_: sessionmaker[Session], audit_insert_rejected: None
) -> None:
    with Session_.begin() as session:
        session.add(Customer(name="before"))
    with auditlog.audit_context(user_id="forbidden"), Session_() as session:
        customer = session.scalars(sa.select(Customer)).one()
        customer.name = "changed"
        session.add(Customer(name="new"))
        with pytest.raises(sa.exc.DBAPIError):
            session.commit()
    assert customers(engine) == ["before"]
    assert [e.action_type for e in entries(engine)] == ["create"]


def test_flush_failure_leaves_the_session_usable(
    engine: Engine, Session_: sessionmaker[Session], audit_insert_rejected: None
) -> None:
    with Session_() as session:
        with auditlog.audit_context(user_id="forbidden"):
            session.add(Customer(name="refused"))
            with pytest.raises(sa.exc.DBAPIError):
                session.flush()
        session.rollback()
        session.add(Customer(name="accepted"))
        session.commit()
    assert customers(engine) == ["accepted"]
    assert [e.after_state and e.after_state["name"] for e in entries(engine)] == ["accepted"]


# --- every write path: once its entries failed, the change cannot be committed -------------------

_table = Customer.__table__
WRITES: dict[str, Any] = {
    "orm update": lambda s: s.execute(sa.update(Customer).where(Customer.id == 1).values(name="x")),
    "orm delete": lambda s: s.execute(sa.delete(Customer).where(Customer.id == 1)),
    "orm insert": lambda s: s.execute(sa.insert(Customer).values(id=2, name="x")),
    "orm update by key": lambda s: s.execute(sa.update(Customer), [{"id": 1, "name": "x"}]),
    "core update": lambda s: s.connection().execute(
        _table.update().where(_table.c.id == 1).values(name="x")
    ),
    "core delete": lambda s: s.execute(_table.delete().where(_table.c.id == 1)),
    "core insert": lambda s: s.connection().execute(_table.insert(), [{"id": 2, "name": "x"}]),
    "bulk_update_mappings": lambda s: s.bulk_update_mappings(Customer, [{"id": 1, "name": "x"}]),
    "bulk_insert_mappings": lambda s: s.bulk_insert_mappings(Customer, [{"id": 2, "name": "x"}]),
    "unit of work": lambda s: (setattr(s.get_one(Customer, 1), "name", "x"), s.flush()),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_a_change_whose_entries_failed_cannot_be_committed(
    engine: Engine,
    Session_: sessionmaker[Session],
    audit_insert_rejected: None,
    write: Callable[[Session], Any],
) -> None:
    """An application that catches the error and commits anyway commits nothing."""
    with Session_.begin() as session:
        session.add(Customer(id=1, name="before"))
    with Session_() as session:
        with auditlog.audit_context(user_id="forbidden"), pytest.raises(sa.exc.DBAPIError):
            write(session)
        with pytest.raises((auditlog.CaptureError, sa.exc.InvalidRequestError)):
            session.commit()
        session.rollback()
        session.add(Customer(id=3, name="later"))  # the session is usable after the rollback
        session.commit()
    assert sorted(customers(engine)) == ["before", "later"]


def test_a_savepoint_rolled_back_with_the_failed_change_lets_the_rest_commit(
    engine: Engine, Session_: sessionmaker[Session], audit_insert_rejected: None
) -> None:
    with Session_.begin() as session:
        session.add(Customer(id=1, name="before"))
    with Session_() as session:
        session.add(Customer(id=2, name="kept"))
        session.flush()
        with (
            auditlog.audit_context(user_id="forbidden"),
            pytest.raises(sa.exc.DBAPIError),
            session.begin_nested(),
        ):
            session.execute(sa.update(Customer).where(Customer.id == 1).values(name="x"))
        session.commit()  # the change went with its savepoint: nothing unaudited is left
    assert sorted(customers(engine)) == ["before", "kept"]
    assert [e.object_id for e in entries(engine)] == ["1", "2"]


def test_a_savepoint_released_after_the_failure_still_refuses_the_commit(
    backend: str, engine: Engine, Session_: sessionmaker[Session], audit_insert_rejected: None
) -> None:
    with Session_.begin() as session:
        session.add(Customer(id=1, name="before"))
    with Session_() as session:
        session.add(Customer(id=2, name="first"))
        session.flush()  # (pysqlite begins the transaction before DML only, not a SAVEPOINT)
        nested = session.begin_nested()
        with auditlog.audit_context(user_id="forbidden"), pytest.raises(sa.exc.DBAPIError):
            session.execute(sa.update(Customer).where(Customer.id == 1).values(name="x"))
        if backend == "postgresql":  # the failed INSERT aborted the whole transaction
            with pytest.raises(sa.exc.InternalError, match="aborted"):
                nested.commit()
        else:
            nested.commit()
            with pytest.raises(auditlog.CaptureError, match="roll it back"):
                session.commit()
        session.rollback()
    assert customers(engine) == ["before"]


def test_the_row_count_check_refuses_the_commit_too(
    backend: str, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """On PostgreSQL a row committed between the read and the UPDATE is updated unread."""
    if backend != "postgresql":
        pytest.skip("MariaDB and SQLite lock the range that was read: no row can appear in it")
    with Session_.begin() as session:
        session.add(Customer(id=1, name="match"))

    def sneak_in(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE customer"):
            with engine.begin() as other:
                other.execute(_table.insert().values(id=2, name="match"))

    with Session_() as session:
        sa.event.listen(engine, "before_cursor_execute", sneak_in)
        try:
            with pytest.raises(auditlog.CaptureError, match="appeared concurrently"):
                session.execute(
                    sa.update(Customer).where(Customer.name == "match").values(name="changed")
                )
        finally:
            sa.event.remove(engine, "before_cursor_execute", sneak_in)
        with pytest.raises(auditlog.CaptureError, match="cannot commit"):
            session.commit()
        session.rollback()
    assert sorted(customers(engine)) == ["match", "match"]
