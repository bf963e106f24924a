"""If an audit entry cannot be written, the flush fails and the change is not committed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

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
