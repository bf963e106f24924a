"""The benchmark model and the ways of auditing it, one per variant.

Every variant maps the same table, ``bench_item`` (nine columns: JSON, Numeric and DateTime among
them), and differs only in what records its changes:

- ``plain``: nothing, the baseline;
- ``auditlog``: this library, ``register`` + ``enable`` on the run's sessionmaker, inside an
  ``audit_context`` carrying a user, a tenant, an address and a user agent; its JSON is written
  by orjson (the ``fast`` extra, installed in the benchmark environment);
- ``stdlib-json`` (only with ``--compare stdlib-json``): the same, with the standard library's
  JSON encoder, as installed without the extra;
- ``naive``: what a team writes by hand in forty lines, on every database: a ``before_flush``
  listener collecting the new, changed and deleted objects with their column values (only the
  changed columns of an update, from their history), an ``after_flush`` listener inserting one
  ``naive_audit`` row per object (table, key, action, JSON of the values, time) with one
  executemany in the flush's transaction; no actor, no tenant, nothing for bulk statements;
- ``continuum``: SQLAlchemy-Continuum 2.0 (``make_versioned``, ``__versioned__ = {}``,
  ``configure_mappers``), one version row and one transaction row per change;
- ``trigger`` (PostgreSQL): no Python at all, an ``AFTER ... FOR EACH ROW`` trigger writing
  ``to_jsonb(OLD)`` / ``to_jsonb(NEW)`` into a JSONB table: the floor of in-transaction auditing;
- ``in-database`` (PostgreSQL): what capture inside the database would cost with everything an
  entry holds: an ``AFTER ... FOR EACH ROW`` trigger writing auditlog's own row into
  ``audit_log`` (its indexes and the content type's foreign key), a time-ordered id made
  on the server, ``changed_fields``, no entry for an update that changed nothing, and the
  request's context (actor, tenant, address, user agent, transaction id) read from a comment
  that a ``before_cursor_execute`` listener puts in front of each INSERT, UPDATE and DELETE, so
  that no statement is added. A measurement of that design, not a capture mode: its states are
  PostgreSQL's ``to_jsonb`` of the row, not auditlog's documented encoding;
- ``audit-trail`` (PostgreSQL): sqlalchemy-audit-trail 0.2 with ``on_error="raise"``, so that a
  failed audit write fails the flush as it does here.

The comparison libraries install global listeners when imported or set up, so each variant is set
up in its own process (see ``worker.py``) and nothing is imported before it is needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

__all__ = ["POSTGRESQL_ONLY", "VARIANTS", "Setup", "item_values", "set_up"]

VARIANTS = (
    "plain",
    "auditlog",
    "stdlib-json",
    "naive",
    "continuum",
    "trigger",
    "in-database",
    "audit-trail",
)
POSTGRESQL_ONLY = frozenset({"trigger", "in-database", "audit-trail"})

TABLE = "bench_item"
_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
_COLORS = ("red", "green", "blue", "black", "white")


def item_values(i: int) -> dict[str, Any]:
    """The column values of the i-th row: deterministic, about 300 bytes."""
    return {
        "sku": f"SKU-{i:08d}",
        "name": f"Benchmark item number {i}",
        "price": Decimal(i % 100_000) / 100,
        "quantity": i % 500,
        "active": i % 3 != 0,
        "attributes": {"color": _COLORS[i % 5], "size": i % 40, "tags": ["bench", f"t{i % 7}"]},
        "created_at": _EPOCH + dt.timedelta(seconds=i),
        "updated_at": None,
    }


def _columns() -> dict[str, Any]:
    return {
        "__tablename__": TABLE,
        "id": mapped_column(sa.Integer, primary_key=True),
        "sku": mapped_column(sa.String(32), nullable=False),
        "name": mapped_column(sa.String(200), nullable=False),
        "price": mapped_column(sa.Numeric(12, 2), nullable=False),
        "quantity": mapped_column(sa.Integer, nullable=False),
        "active": mapped_column(sa.Boolean, nullable=False),
        "attributes": mapped_column(sa.JSON, nullable=False),
        "created_at": mapped_column(sa.DateTime(timezone=True), nullable=False),
        "updated_at": mapped_column(sa.DateTime(timezone=True), nullable=True),
    }


@dataclass
class Setup:
    """One variant, ready to run: its model, its sessionmaker and how to count what it recorded."""

    variant: str
    engine: Engine
    model: type[Any]
    sessions: sessionmaker[Any]
    #: context manager every timed block runs in (the request context of the auditing library)
    context: Callable[[], contextlib.AbstractContextManager[Any]]
    #: rows the auditing wrote so far (0 for plain)
    count_entries: Callable[[], int]


def _count(engine: Engine, sql: str) -> Callable[[], int]:
    def count() -> int:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar_one())

    return count


def _no_context() -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext()


def _plain(engine: Engine) -> Setup:
    class Base(DeclarativeBase):
        pass

    model = type("Item", (Base,), _columns())
    Base.metadata.create_all(engine)
    return Setup("plain", engine, model, sessionmaker(engine), _no_context, lambda: 0)


def _auditlog(engine: Engine) -> Setup:
    import auditlog

    class Base(DeclarativeBase):
        pass

    model = type("Item", (Base,), _columns())
    Base.metadata.create_all(engine)
    auditlog.create_tables(engine)
    auditlog.register(model)
    sessions = sessionmaker(engine)
    auditlog.enable(sessions)

    def context() -> contextlib.AbstractContextManager[Any]:
        return auditlog.audit_context(
            user_id="user-42",
            tenant_id="3f1c2a9e-0b7d-4c1e-9a55-6f2d8e1b7c40",
            ip_address="203.0.113.7",
            user_agent="bench/1.0",
        )

    return Setup(
        "auditlog",
        engine,
        model,
        sessions,
        context,
        _count(engine, "SELECT count(*) FROM audit_log"),
    )


def _stdlib_json(engine: Engine) -> Setup:
    """auditlog with the standard library's JSON encoder, as installed without the fast extra."""
    from auditlog import documents

    documents.encoder = documents.stdlib_dumps
    return dataclasses.replace(_auditlog(engine), variant="stdlib-json")


# --- naive: a hand-written before_flush / after_flush pair ---------------------------------------


def _naive_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "naive_audit",
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("table_name", sa.String(100), nullable=False),
        sa.Column("object_id", sa.String(100), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _naive_changes(obj: Any, action: str) -> dict[str, Any]:
    """Every column of a new or deleted object; old and new value of an update's changed columns."""
    state = sa.inspect(obj)
    columns = state.mapper.column_attrs
    if action != "update":
        return {c.key: _jsonable(state.attrs[c.key].value) for c in columns}
    changes = {}
    for column in columns:
        history = state.attrs[column.key].history
        if history.has_changes():
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            changes[column.key] = [_jsonable(old), _jsonable(new)]
    return changes


def _naive_listen(sessions: sessionmaker[Any], table: sa.Table) -> None:
    @sa.event.listens_for(sessions, "before_flush")
    def collect(session: Session, _flush: Any, _instances: Any) -> None:
        pending = session.info.setdefault("naive_audit", [])
        pending += [(obj, "insert", _naive_changes(obj, "insert")) for obj in session.new]
        pending += [
            (obj, "update", _naive_changes(obj, "update"))
            for obj in session.dirty
            if session.is_modified(obj)
        ]
        pending += [(obj, "delete", _naive_changes(obj, "delete")) for obj in session.deleted]

    @sa.event.listens_for(sessions, "after_flush")
    def write(session: Session, _flush: Any) -> None:
        pending = session.info.pop("naive_audit", [])
        if not pending:
            return
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for obj, action, changes in pending:
            mapper = sa.inspect(obj).mapper  # new objects have their key now, not yet an identity
            rows.append(
                {
                    "table_name": mapper.local_table.name,
                    "object_id": ",".join(str(k) for k in mapper.primary_key_from_instance(obj)),
                    "action": action,
                    "changes": changes,
                    "created_at": now,
                }
            )
        session.connection().execute(table.insert(), rows)


def _naive(engine: Engine) -> Setup:
    class Base(DeclarativeBase):
        pass

    model = type("Item", (Base,), _columns())
    table = _naive_table(Base.metadata)
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine)
    _naive_listen(sessions, table)
    return Setup(
        "naive",
        engine,
        model,
        sessions,
        _no_context,
        _count(engine, "SELECT count(*) FROM naive_audit"),
    )


def _continuum(engine: Engine) -> Setup:
    from sqlalchemy_continuum import make_versioned

    make_versioned(user_cls=None)

    class Base(DeclarativeBase):
        pass

    model = type("Item", (Base,), {**_columns(), "__versioned__": {}})
    sa.orm.configure_mappers()
    Base.metadata.create_all(engine)
    return Setup(
        "continuum",
        engine,
        model,
        sessionmaker(engine),
        _no_context,
        _count(engine, f"SELECT count(*) FROM {TABLE}_version"),
    )


_TRIGGER_DDL = (
    """CREATE TABLE trigger_audit (
        id bigserial PRIMARY KEY,
        table_name text NOT NULL,
        action text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        old_row jsonb,
        new_row jsonb
    )""",
    """CREATE FUNCTION trigger_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO trigger_audit (table_name, action, old_row, new_row)
        VALUES (TG_TABLE_NAME, TG_OP,
                CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
                CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
        RETURN NULL;
    END
    $$""",
    f"""CREATE TRIGGER {TABLE}_audit AFTER INSERT OR UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION trigger_audit_row()""",
)


def _trigger(engine: Engine) -> Setup:
    setup = _plain(engine)
    with engine.begin() as conn:
        for statement in _TRIGGER_DDL:
            conn.exec_driver_sql(statement)
    setup.variant = "trigger"
    setup.count_entries = _count(engine, "SELECT count(*) FROM trigger_audit")
    return setup


_IN_DATABASE_FUNCTION = """
CREATE FUNCTION in_database_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    query text := current_query();
    context jsonb;
    before jsonb;
    after jsonb;
    changed jsonb;
BEGIN
    IF starts_with(query, '/*auditlog:') THEN
        context := substr(query, 12, strpos(query, '*/') - 12)::jsonb;
    END IF;
    IF TG_OP <> 'INSERT' THEN before := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN after := to_jsonb(NEW); END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT jsonb_agg(key ORDER BY key) INTO changed
        FROM jsonb_each(after) AS fields(key, value)
        WHERE before -> key IS DISTINCT FROM value;
        IF changed IS NULL THEN RETURN NULL; END IF;
    END IF;
    INSERT INTO audit_log (id, tenant_id, user_id, action_type, timestamp, ip_address,
        user_agent, object_id, content_type, before_state, after_state, changed_fields,
        transaction_id)
    VALUES (
        encode(overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send(
            (extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
            'hex')::uuid,
        context ->> 'tenant_id', context ->> 'user_id',
        CASE TG_OP WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END,
        clock_timestamp(), context ->> 'ip_address', coalesce(context ->> 'user_agent', ''),
        coalesce(NEW.id, OLD.id)::text, TG_ARGV[0]::integer, before, after, changed,
        (context ->> 'transaction_id')::uuid);
    RETURN NULL;
END
$$"""


def _in_database(engine: Engine) -> Setup:
    import contextvars
    import json
    import uuid

    import auditlog

    setup = _plain(engine)
    auditlog.create_tables(engine)
    with engine.begin() as conn:
        content_type = conn.execute(
            sa.text("INSERT INTO audit_content_type (name) VALUES ('bench.Item') RETURNING id")
        ).scalar_one()
        conn.exec_driver_sql(_IN_DATABASE_FUNCTION)
        conn.exec_driver_sql(
            f"CREATE TRIGGER {TABLE}_in_database AFTER INSERT OR UPDATE OR DELETE ON {TABLE} "
            f"FOR EACH ROW EXECUTE FUNCTION in_database_audit('{content_type}')"
        )
    current: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_context")
    transaction: dict[int, str] = {}

    @sa.event.listens_for(setup.sessions, "after_begin")
    def begin(_session: Session, _transaction: Any, connection: Any) -> None:
        transaction[id(connection.connection.dbapi_connection)] = str(uuid.uuid4())

    @sa.event.listens_for(engine, "before_cursor_execute", retval=True)
    def prefix(conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, _many: bool):
        text = current.get(None)
        if (
            text is None
            or context is None
            or not (context.isinsert or context.isupdate or context.isdelete)
        ):
            return statement, parameters
        # "/" escaped so that no "*/" ends the comment early, "%" for the driver's placeholders
        txid = transaction.get(id(conn.connection.dbapi_connection))
        if txid is not None:  # a statement of a session's transaction
            text = f'{text[:-1]},"transaction_id":"{txid}"}}'
        return f"/*auditlog:{text}*/{statement}", parameters

    @contextlib.contextmanager
    def context() -> Any:
        text = json.dumps(
            {
                "user_id": "user-42",
                "tenant_id": "3f1c2a9e-0b7d-4c1e-9a55-6f2d8e1b7c40",
                "ip_address": "203.0.113.7",
                "user_agent": "bench/1.0",
            },
            separators=(",", ":"),
        )
        token = current.set(text.replace("/", "\\/").replace("%", "\\u0025"))
        try:
            yield
        finally:
            current.reset(token)

    setup.variant = "in-database"
    setup.context = context
    setup.count_entries = _count(engine, "SELECT count(*) FROM audit_log")
    return setup


def _audit_trail(engine: Engine) -> Setup:
    from audit_trail import Audited, AuditTrail
    from audit_trail.migrations import create_audit_tables

    class Base(DeclarativeBase):
        pass

    model = type("Item", (Base, Audited), _columns())
    sa.orm.configure_mappers()
    trail = AuditTrail(engine, events=[], on_error="raise", warn_on_bulk=False)
    sessions = sessionmaker(engine)
    trail.install(sessions)
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
        create_audit_tables(conn, trail.tables, trail.severities)
    trail.maintenance.ensure_partitions()

    def context() -> contextlib.AbstractContextManager[Any]:
        return trail.context(
            actor_type="user", actor_id="user-42", remote_addr="203.0.113.7", user_agent="bench/1.0"
        )

    return Setup(
        "audit-trail",
        engine,
        model,
        sessions,
        context,
        _count(engine, "SELECT count(*) FROM audit.audit_activity"),
    )


_SETUPS: dict[str, Callable[[Engine], Setup]] = {
    "plain": _plain,
    "auditlog": _auditlog,
    "stdlib-json": _stdlib_json,
    "naive": _naive,
    "continuum": _continuum,
    "trigger": _trigger,
    "in-database": _in_database,
    "audit-trail": _audit_trail,
}


def set_up(variant: str, engine: Engine) -> Setup:
    """Create the tables of ``variant`` on an empty database and return it ready to run."""
    if variant in POSTGRESQL_ONLY and engine.dialect.name != "postgresql":
        raise ValueError(f"{variant} runs on PostgreSQL only")
    return _SETUPS[variant](engine)
