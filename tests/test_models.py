"""The audit tables: generic tools can read, dump and restore them; old tables are migrated."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog, ConfigurationError
from auditlog.capture.ids import new_ulids
from auditlog.models import audit_log_table, content_type_table

from .models import Customer

DOC = Path(__file__).resolve().parent.parent / "docs" / "tables.md"


def _history(maker: sessionmaker[Session]) -> list[dict[str, Any]]:
    with maker() as session:
        page = auditlog.query_history(session, page_size=100)
    return page.model_dump(mode="json")["results"]


def _write(maker: sessionmaker[Session]) -> None:
    with auditlog.audit_context(user_id="alice"), maker.begin() as session:
        session.add_all([Customer(id=1, name="Ada"), Customer(id=2, name="Bob")])
    with maker.begin() as session:
        session.get_one(Customer, 1).name = "Ada L."


def _plain(value: Any) -> Any:
    """What a generic JSON dump does with the usual column types, and nothing more: bytes fail."""
    if isinstance(value, (dt.datetime, dt.date, uuid.UUID, Decimal)):
        return str(value)
    raise TypeError(f"cannot dump {type(value).__name__}")


def test_a_generic_json_dump_and_restore_keeps_the_log_readable(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    _write(Session_)
    before = _history(Session_)
    reflected = sa.Table("audit_log", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        dump = json.dumps(
            [dict(row) for row in conn.execute(reflected.select()).mappings()], default=_plain
        )
    with engine.begin() as conn:
        conn.execute(audit_log_table.delete())
        rows = json.loads(dump)
        for row in rows:
            moment = dt.datetime.fromisoformat(row["timestamp"])
            row["timestamp"] = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
            for key in ("before_state", "after_state", "changed_fields", "extra"):
                if isinstance(row[key], str):  # JSON columns some dialects reflect as text
                    row[key] = json.loads(row[key])
        conn.execute(audit_log_table.insert(), rows)
    assert _history(Session_) == before


def _sql_blocks(backend: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"^```sql {backend}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert found is not None, f"no sql {backend} block in {DOC.name}"
    return [s.strip() for s in found[1].split(";") if s.strip()]


def _old_tables(backend: str) -> sa.MetaData:
    """The tables as auditlog made them before 0.2: binary ids."""
    old = sa.MetaData()
    content_type_table.to_metadata(old)
    log = audit_log_table.to_metadata(old)
    binary: sa.types.TypeEngine[Any] = (
        sa.dialects.postgresql.BYTEA() if backend == "postgresql" else sa.BINARY(16)
    )
    for name in ("id", "transaction_id"):
        log.c[name].type = binary
    log.indexes.discard(next(i for i in log.indexes if i.name == "ix_audit_log_renamed"))
    log._columns.remove(log.c.renamed_to)
    return old


def test_binary_ids_are_refused_until_the_documented_migration_runs(
    backend: str, engine: Engine
) -> None:
    auditlog.register(Customer)
    old = _old_tables(backend)
    at = dt.datetime(2025, 3, 26, 13, 0, tzinfo=dt.timezone.utc)
    ids = new_ulids(at, 2)
    with engine.begin() as conn:
        auditlog.metadata.drop_all(conn)
        old.create_all(conn)
        ctype = conn.execute(
            old.tables["audit_content_type"].insert().values(name="old.Model")
        ).inserted_primary_key[0]
        conn.execute(
            old.tables["audit_log"].insert(),
            [
                {"id": ids[0], "transaction_id": ids[1], "action_type": "create",
                 "timestamp": at, "object_id": "1", "content_type": ctype, "user_agent": ""},
                {"id": ids[1], "transaction_id": None, "action_type": "access",
                 "timestamp": at, "object_id": "2", "content_type": ctype, "user_agent": ""},
            ],
        )  # fmt: skip
    try:
        with pytest.raises(ConfigurationError, match=r"Migrating from 0\.1"):
            auditlog.create_tables(engine)
        with engine.begin() as conn:
            for statement in _sql_blocks(backend):
                conn.exec_driver_sql(statement)
        auditlog.create_tables(engine)  # accepted now
        with Session(engine) as session:
            entries = session.scalars(sa.select(AuditLog).order_by(AuditLog.id)).all()
            assert [(e.id, e.transaction_id) for e in entries] == [
                (str(ULID.from_bytes(ids[0])), str(ULID.from_bytes(ids[1]))),
                (str(ULID.from_bytes(ids[1])), None),
            ]
    finally:
        with engine.begin() as conn:
            old.drop_all(conn)
            auditlog.create_tables(conn)
