"""Small readers of the audit log for assertions."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog

from .models import Customer


def entries(engine: Engine, **filters: Any) -> list[AuditLog]:
    """Every audit entry (optionally filtered by column values), oldest first."""
    with sa.orm.Session(engine) as session:
        query = sa.select(AuditLog).filter_by(**filters).order_by(AuditLog.timestamp, AuditLog.id)
        return list(session.scalars(query))


def date_back(engine: Engine, first: dt.datetime, step: dt.timedelta) -> list[tuple[str, Any]]:
    """Give the entries written so far the times first, first + step, ... (oldest first), with
    ids of the same millisecond as capture writes them; returns (id, timestamp) in order."""
    log = AuditLog.__table__
    dated = []
    with engine.begin() as conn:
        rows = conn.execute(sa.select(log.c.id).order_by(log.c.id)).all()
        for i, row in enumerate(rows):
            moment = first + i * step
            new_id = str(ULID.from_datetime(moment))
            conn.execute(
                sa.update(log).where(log.c.id == row.id).values(id=new_id, timestamp=moment)
            )
            dated.append((new_id, moment))
    return dated


def actions(engine: Engine) -> list[tuple[str, str]]:
    """(action_type, object_id) of every entry, oldest first."""
    return [(e.action_type, e.object_id) for e in entries(engine)]


# --- a small history, as the HTTP and command-line tests read it ----------------------------

TENANT_A = "6f1c2a9e-0c4b-4f4e-9a51-3f3b1e7d2a0a"
TENANT_B = "d3b07384-d9a0-4c3f-8b1e-7d5e0f6a2b0b"
TOKENS = {"token-a": TENANT_A, "token-b": TENANT_B}
AUTH_A = {"Authorization": "Bearer token-a"}
AUTH_B = {"Authorization": "Bearer token-b"}
PAGE_KEYS = [
    "count", "total_pages", "current_page", "has_previous", "has_next", "previous_page",
    "next_page", "results", "next_cursor", "count_exact",
]  # fmt: skip
#: The keys of the documented example, then the ones entries added since (readable entries).
ENTRY_KEYS = {
    "id", "tenant_id", "user_id", "created_by", "action_type", "timestamp", "ip_address",
    "user_agent", "object_id", "before_state", "after_state", "content_type",
} | {"model", "model_label", "changed_fields", "diff", "transaction_id", "extra"}  # fmt: skip


def seed_history(engine: Engine) -> None:
    """Real audited writes: tenant A has 3 creates, 1 update, 1 delete; tenant B has 2 creates."""
    auditlog.register(Customer)
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    alice = auditlog.audit_context(
        tenant_id=TENANT_A, user_id="alice", ip_address="10.0.0.1", user_agent="pytest/1"
    )
    with alice, maker.begin() as session:
        session.add_all(
            [Customer(id=i, tenant_id=TENANT_A, name=f"customer {i}") for i in (1, 2, 3)]
        )
    with auditlog.audit_context(tenant_id=TENANT_A, user_id="bob", ip_address="2001:db8::1"):
        with maker.begin() as session:
            session.get_one(Customer, 1).name = "Ada"
        with maker.begin() as session:
            session.delete(session.get_one(Customer, 3))
    carol = auditlog.audit_context(tenant_id=TENANT_B, user_id="carol", ip_address="10.0.0.2")
    with carol, maker.begin() as session:
        session.add_all([Customer(id=i, tenant_id=TENANT_B, name=f"b{i}") for i in (10, 11)])


def assert_history_page(body: dict[str, Any]) -> None:
    """The body has exactly the page keys and entry keys of GET /history/, with their types."""
    assert list(body) == PAGE_KEYS
    assert isinstance(body["count"], int)
    for entry in body["results"]:
        assert set(entry) == ENTRY_KEYS
        assert len(entry["id"]) == 26
        assert entry["created_by"] == entry["user_id"]
        assert entry["action_type"] in {"create", "update", "delete", "access"}
        assert entry["timestamp"].endswith("Z")
        assert isinstance(entry["content_type"], int)
        assert isinstance(entry["user_agent"], str)


Check = Callable[[int, Any], bool]


def object_state_cases(engine: Engine) -> list[tuple[str, dict[str, str], Check]]:
    """``GET /history/state/`` requests on the history of :func:`seed_history`, each with a
    check of the status and JSON body any mount must answer with."""
    created, renamed = (e.id for e in entries(engine, tenant_id=TENANT_A, object_id="1"))
    base = "/history/state/?content_type=tests.models.Customer"
    return [
        (f"{base}&object_id=1", AUTH_A, lambda s, b: s == 200 and b["state"]["name"] == "Ada"),
        (f"{base}&object_id=1", AUTH_A, lambda s, b: b["entry_id"] == renamed),
        (
            f"{base}&object_id=1&at={created}",
            AUTH_A,
            lambda s, b: b["state"]["name"] == "customer 1",
        ),
        # deleted: no state, from the delete entry
        (f"{base}&object_id=3", AUTH_A, lambda s, b: b["state"] is None and bool(b["entry_id"])),
        # another tenant's object: nothing, and its entry ids mean nothing
        (
            f"{base}&object_id=1",
            AUTH_B,
            lambda s, b: (s, b["state"], b["entry_id"]) == (200, None, None),
        ),
        (
            f"{base}&object_id=1&at={created}",
            AUTH_B,
            lambda s, b: (s, b["parameter"]) == (400, "at"),
        ),
        (base, AUTH_A, lambda s, b: (s, b["parameter"]) == (400, "object_id")),
        (f"{base}&object_id=1&at=soon", AUTH_A, lambda s, b: (s, b["parameter"]) == (400, "at")),
        (f"{base}&object_id=1", {}, lambda s, b: s == 401),
        # an id too long for any integer, and digits of another script (a name, not id 1)
        (
            f"/history/state/?content_type={'9' * 5000}&object_id=1",
            AUTH_A,
            lambda s, b: (s, b["parameter"]) == (400, "content_type") and "0 to" in b["detail"],
        ),
        (
            "/history/state/?content_type=%D9%A1&object_id=1",
            AUTH_A,
            lambda s, b: (s, b["parameter"]) == (400, "content_type") and "named" in b["detail"],
        ),
    ]


def store_text(engine: Engine, entry_id: str, column: str, text: str) -> None:
    """Store ``text`` as is in a JSON column of one entry, as something other than auditlog
    might on SQLite or MariaDB, which keep JSON as text (PostgreSQL's jsonb refuses it)."""
    table = AuditLog.__table__
    with engine.begin() as conn:
        if engine.dialect.name == "mariadb":  # its JSON column checks what is written: lift it
            conn.exec_driver_sql("SET SESSION check_constraint_checks = 0")
        conn.execute(
            sa.update(table)
            .where(table.c.id == entry_id)
            .values({column: sa.type_coerce(text, sa.Text())})
        )


@contextlib.contextmanager
def rows_kept(engine: Engine, table: str, condition: str) -> Iterator[None]:
    """A trigger that keeps the rows of ``table`` matching ``condition`` (on ``OLD``) from any
    DELETE, on PostgreSQL and SQLite (MariaDB's triggers cannot skip a row: nothing there)."""
    dialect = engine.dialect.name
    name = f"{table}_keep"
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN IF {condition} THEN RETURN NULL; END IF; RETURN OLD; END $$"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
        elif dialect == "sqlite":
            # a pooled connection may still hold the schema from before the last test dropped
            # the trigger, and SQLite checks "already exists" against it: reading it refreshes it
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE DELETE ON {table} "
                f"WHEN {condition} BEGIN SELECT RAISE(IGNORE); END"
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            if dialect == "postgresql":
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
            elif dialect == "sqlite":
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
