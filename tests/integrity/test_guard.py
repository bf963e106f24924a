"""The guard: the database refuses UPDATE and DELETE on the audit tables, except auditlog's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import AuditLog, ContentType
from auditlog.integrity import maintenance, seal_entry_table, seal_table

from ..helpers import entries
from ..models import Tag

LOG = AuditLog.__table__


@pytest.fixture
def protected(engine: Engine) -> Iterator[Engine]:
    auditlog.protect(engine)
    auditlog.protect(engine)  # twice: the same guard
    try:
        yield engine
    finally:
        auditlog.unprotect(engine)


def _write(maker: sessionmaker[Session], n: int) -> None:
    auditlog.register(Tag)
    for i in range(1, n + 1):
        with maker.begin() as session:
            session.add(Tag(id=i, label=f"tag {i}"))


@pytest.mark.parametrize(
    "table", [LOG, ContentType.__table__, seal_table, seal_entry_table], ids=lambda t: t.name
)
@pytest.mark.parametrize("operation", ["update", "delete"])
def test_updates_and_deletes_of_the_audit_tables_are_refused(
    protected: Engine, Session_: sessionmaker[Session], table: sa.Table, operation: str
) -> None:
    _write(Session_, 2)  # audited writes still insert
    auditlog.seal(protected)  # and so does sealing
    key = table.primary_key.columns[0].name
    values = {key: table.c[key]} if table is not ContentType.__table__ else {"name": "moved"}
    statement = sa.update(table).values(values) if operation == "update" else sa.delete(table)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), protected.begin() as conn:
        conn.execute(statement)
    assert len(entries(protected)) == 2
    assert auditlog.verify(protected).intact


def test_model_names_cannot_be_swapped_but_a_model_made_twice_at_once_still_is(
    protected: Engine, Session_: sessionmaker[Session]
) -> None:
    """Entries name their model by its content type id: renaming one would make them another
    model's. The first-use insert that meets a row made meanwhile by another connection (on
    MariaDB an update that changes nothing) still passes."""
    from types import SimpleNamespace

    from auditlog.capture.content_types import _insert_ignoring_duplicates
    from auditlog.registry import model_name

    _write(Session_, 1)
    table = ContentType.__table__
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), protected.begin() as conn:
        conn.execute(sa.update(table).values(name="elsewhere.Tag"))
    names = sa.select(table.c.id, table.c.name, table.c.table_name).order_by(table.c.id)
    with protected.begin() as conn:
        before = conn.execute(names).all()
        tag = next(row for row in before if row.name == model_name(Tag))
        plan = SimpleNamespace(content_type_name=tag.name, table_name=tag.table_name)
        _insert_ignoring_duplicates(conn, plan)  # type: ignore[arg-type]
        assert conn.execute(names).all() == before


def test_truncate_is_refused_on_postgresql(
    protected: Engine, Session_: sessionmaker[Session]
) -> None:
    if protected.dialect.name != "postgresql":
        pytest.skip("TRUNCATE fires triggers on PostgreSQL only: elsewhere, withhold DROP")
    _write(Session_, 1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), protected.begin() as conn:
        conn.exec_driver_sql("TRUNCATE audit_log")
    assert len(entries(protected)) == 1


def test_maintenance_passes_for_its_transaction_only(
    protected: Engine, Session_: sessionmaker[Session]
) -> None:
    _write(Session_, 2)
    first = entries(protected)[0].id
    with protected.begin() as conn, maintenance(conn):
        conn.execute(sa.update(LOG).where(LOG.c.id == first).values(user_id="erased"))
    assert entries(protected)[0].user_id == "erased"
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), protected.begin() as conn:
        conn.execute(sa.update(LOG).values(user_id="again"))
    with (
        protected.connect() as conn,
        pytest.raises(ValueError, match="begin a transaction"),
        maintenance(conn),
    ):
        pass


def test_unprotect_removes_the_guard(engine: Engine, Session_: sessionmaker[Session]) -> None:
    _write(Session_, 1)
    auditlog.protect(engine)
    auditlog.unprotect(engine)
    auditlog.unprotect(engine)  # twice: nothing left to remove
    with engine.begin() as conn:
        conn.execute(sa.update(LOG).values(user_id="allowed"))
    assert entries(engine)[0].user_id == "allowed"
