"""The horizon fails closed: a relay role that cannot see other roles' transactions relays every
entry but never moves its horizon, and says why."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog.relay import RelaySource

from ..models import Customer


def test_a_postgresql_role_without_pg_read_all_stats_holds_the_horizon(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("pg_stat_activity's privileges are PostgreSQL's")
    role = f"auditlog_relay_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT SELECT ON audit_log, audit_content_type TO {role}")
        conn.exec_driver_sql(f"GRANT ALL ON audit_relay, audit_relay_entry TO {role}")
    relay_engine = sa.create_engine(engine.url.set(username=role, password=None))
    try:
        auditlog.register(Customer)
        with Session_.begin() as session:
            session.add(Customer(id=1, name="a"))
        hidden = engine.connect()  # another role's session, open
        hidden.execute(sa.text("SELECT 1"))
        source = RelaySource(relay_engine, margin=0)
        source.start()
        batch = source.read()
        bound = source.record([e.id for e in batch])
        assert len(batch) == 1 and bound.at is None and source.horizon is None
        assert bound.note is not None and "grant it pg_read_all_stats" in bound.note
        status = auditlog.relay_status(engine, "default")
        assert status is not None and status.note == bound.note and status.pending == 0
        hidden.close()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"GRANT pg_read_all_stats TO {role}")
        bound = source.record([])
        assert bound.note is None and source.horizon is not None
    finally:
        relay_engine.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def test_a_mariadb_user_without_process_holds_the_horizon(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    if engine.dialect.name not in {"mariadb", "mysql"}:
        pytest.skip("INNODB_TRX's privilege is MariaDB's")
    user = f"auditlog_relay_{uuid.uuid4().hex[:8]}"
    database = engine.url.database
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE USER '{user}'@'%'"))
        for table in ("audit_log", "audit_content_type"):
            conn.execute(sa.text(f"GRANT SELECT ON {database}.{table} TO '{user}'@'%'"))
        for table in ("audit_relay", "audit_relay_entry"):
            conn.execute(sa.text(f"GRANT ALL ON {database}.{table} TO '{user}'@'%'"))
    relay_engine = sa.create_engine(engine.url.set(username=user, password=None))
    try:
        auditlog.register(Customer)
        with Session_.begin() as session:
            session.add(Customer(id=1, name="a"))
        source = RelaySource(relay_engine, margin=0)
        source.start()
        batch = source.read()
        bound = source.record([e.id for e in batch])
        assert len(batch) == 1 and bound.at is None and source.horizon is None
        assert bound.note is not None and "grant PROCESS" in bound.note
        with engine.begin() as conn:
            conn.execute(sa.text(f"GRANT PROCESS ON *.* TO '{user}'@'%'"))
        relay_engine.dispose()  # privileges are read at connection
        bound = source.record([])
        assert bound.note is None and source.horizon is not None
    finally:
        relay_engine.dispose()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP USER '{user}'@'%'"))
