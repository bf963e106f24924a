"""warn_unaudited_writes(): writes that bypass the log are pointed out, audited ones are not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import UnauditedWriteWarning

from ..helpers import entries
from ..models import Customer, Tag


@pytest.fixture
def guarded(engine: Engine) -> Iterator[Engine]:
    auditlog.register(Customer)
    auditlog.warn_unaudited_writes(engine)
    auditlog.warn_unaudited_writes(engine)  # idempotent
    yield engine
    auditlog.warn_unaudited_writes(engine, enabled=False)


def test_audited_flushes_and_statements_do_not_warn(
    guarded: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:  # filterwarnings=error would fail the test on a warning
        customer = Customer(name="a")
        session.add(customer)
        session.flush()
        customer.name = "b"
        session.execute(sa.update(Customer).values(email="e"))
        session.execute(sa.insert(Customer), [{"name": "c"}])
        session.execute(sa.delete(Customer).where(Customer.name == "c"))
    assert len(entries(guarded)) == 5


def test_core_statement_on_a_connection_warns(guarded: Engine) -> None:
    with guarded.begin() as conn, pytest.warns(UnauditedWriteWarning, match="'customer'"):
        conn.execute(sa.insert(Customer.__table__).values(name="core"))
    assert entries(guarded) == []


def test_legacy_bulk_methods_are_captured_on_enabled_sessions_and_warn_elsewhere(
    guarded: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:  # captured: no warning
        session.bulk_insert_mappings(Customer, [{"name": "legacy"}])  # type: ignore[arg-type]
    assert len(entries(guarded)) == 1
    with Session(guarded) as session, pytest.warns(UnauditedWriteWarning, match="INSERT"):
        session.bulk_insert_mappings(Customer, [{"name": "unaudited"}])  # type: ignore[arg-type]


def test_a_session_that_was_never_enabled_warns(guarded: Engine) -> None:
    with Session(guarded) as session, pytest.warns(UnauditedWriteWarning, match="UPDATE"):
        session.execute(sa.update(Customer).values(name="x"))
    with Session(guarded) as session:
        session.add(Customer(name="unaudited"))
        with pytest.warns(UnauditedWriteWarning):
            session.commit()


def test_unaudited_tables_never_warn(guarded: Engine) -> None:
    with guarded.begin() as conn:
        conn.execute(sa.insert(Tag.__table__).values(id=1, label="free"))


def test_a_failed_flush_does_not_silence_later_warnings(
    guarded: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_() as session:
        session.add_all([Customer(id=1, name="a"), Customer(id=1, name="dup")])
        with pytest.raises(sa.exc.DatabaseError):
            session.flush()
        session.rollback()
    with guarded.begin() as conn, pytest.warns(UnauditedWriteWarning):
        conn.execute(sa.delete(Customer.__table__))
