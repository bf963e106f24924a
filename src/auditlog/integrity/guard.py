"""Guards: the database itself refuses UPDATE and DELETE on the audit tables.

:func:`protect` installs triggers on ``audit_log``, ``audit_content_type`` (the entries name their
model by its id there) and the integrity and lifecycle tables (seals, erasures, prunes) that
refuse every UPDATE and DELETE (and, on PostgreSQL, TRUNCATE), whoever runs it: an application
bug, a console session, a migration gone wrong. auditlog's own maintenance (erasure, retention)
passes through :func:`maintenance`, which lifts the guard for its transaction only:

- PostgreSQL: a transaction-local setting, ``auditlog.maintenance``, read by the trigger;
- MariaDB and MySQL: the session variable ``@auditlog_maintenance``, set and cleared around the
  work;
- SQLite: the triggers are dropped and created again inside the transaction (SQLite's DDL is
  transactional, and no other connection writes meanwhile).

A partitioned ``audit_log`` (PostgreSQL) gets the row triggers on every partition from
PostgreSQL itself; :func:`guard_partitions` adds the TRUNCATE one, which PostgreSQL does not
clone.

A guard stops mistakes, not a determined administrator: whoever may drop a trigger or set the
variable can pass it. Against them, the application's database role should own nothing and hold
only ``SELECT`` and ``INSERT`` on ``audit_log`` (docs/integrity.md lists the grants), and seals
(:func:`auditlog.seal`) make any change detectable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..exceptions import ConfigurationError
from ..models import audit_log_table, metadata

__all__ = [
    "GUARDED",
    "guard_partitions",
    "is_protected",
    "maintenance",
    "protect",
    "unprotect",
]

#: The tables the guard covers, by name.
GUARDED = (
    "audit_log",
    "audit_content_type",  # the entries name their model by its id: names may not move
    "audit_seal",
    "audit_seal_entry",
    "audit_erasure",
    "audit_prune",
    "audit_prune_entry",
)
_FUNCTION = "auditlog_refuse_change"


def _guarded() -> list[sa.Table]:
    """The guarded tables (the lifecycle's are declared in a package that imports this one)."""
    from ..lifecycle import tables as _lifecycle  # noqa: F401  (declares audit_prune*)
    from . import tables as _integrity  # noqa: F401

    return [metadata.tables[name] for name in GUARDED]


_OPERATIONS = ("UPDATE", "DELETE")


def _trigger(table: sa.Table, operation: str) -> str:
    return f"auditlog_no_{operation.lower()}_{table.name}"


def _message(table: sa.Table, operation: str) -> str:
    return (
        f"auditlog: {operation} on {table.name} is refused: the audit log is append-only "
        "(auditlog.protect)"
    )


def _statements(connection: Connection) -> list[str]:
    """The statements that install the guard on ``connection``'s database."""
    dialect = connection.dialect.name
    preparer = connection.dialect.identifier_preparer
    statements: list[str] = []
    if dialect == "postgresql":
        statements.append(
            f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  IF current_setting('auditlog.maintenance', true) = 'on' THEN\n"
            "    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\n"
            "    RETURN NEW;\n"
            "  END IF;\n"
            "  RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'auditlog: ' || TG_OP || "
            "' on ' || TG_TABLE_NAME || ' is refused: the audit log is append-only "
            "(auditlog.protect)';\n"
            "END $$"
        )
        for table in _guarded():
            name = preparer.format_table(table)
            for operation in _OPERATIONS:
                statements.append(
                    f"CREATE TRIGGER {_trigger(table, operation)} BEFORE {operation} ON {name} "
                    f"FOR EACH ROW EXECUTE PROCEDURE {_FUNCTION}()"
                )
            statements.append(
                f"CREATE TRIGGER {_trigger(table, 'truncate')} BEFORE TRUNCATE ON {name} "
                f"FOR EACH STATEMENT EXECUTE PROCEDURE {_FUNCTION}()"
            )
    elif dialect in ("mysql", "mariadb"):
        for table in _guarded():
            for operation in _OPERATIONS:
                statements.append(
                    f"CREATE TRIGGER {_trigger(table, operation)} BEFORE {operation} ON "
                    f"{preparer.format_table(table)} FOR EACH ROW BEGIN "
                    "IF (@auditlog_maintenance IS NULL OR @auditlog_maintenance <> 1)"
                    f"{_changes(table, operation)} THEN "
                    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_message(table, operation)}'; "
                    "END IF; END"
                )
    elif dialect == "sqlite":
        statements.extend(_sqlite_triggers(connection))
    else:
        raise ConfigurationError(
            f"protect(): no guard for {dialect}: PostgreSQL, MariaDB, MySQL and SQLite have one"
        )
    return statements


def _changes(table: sa.Table, operation: str) -> str:
    """MariaDB and MySQL: the content types' first-use insert, ``INSERT ... ON DUPLICATE KEY
    UPDATE name = name``, fires the UPDATE trigger when another connection made the row first;
    such an update changes nothing and passes."""
    if table.name != "audit_content_type" or operation != "UPDATE":
        return ""
    same = " AND ".join(f"NEW.{c.name} <=> OLD.{c.name}" for c in table.columns)
    return f" AND NOT ({same})"


def _sqlite_triggers(connection: Connection) -> list[str]:
    preparer = connection.dialect.identifier_preparer
    return [
        f"CREATE TRIGGER {_trigger(table, operation)} BEFORE {operation} ON "
        f"{preparer.format_table(table)} BEGIN "
        f"SELECT RAISE(ABORT, '{_message(table, operation)}'); END"
        for table in _guarded()
        for operation in _OPERATIONS
    ]


def _drop_statements(connection: Connection) -> list[str]:
    dialect = connection.dialect.name
    preparer = connection.dialect.identifier_preparer
    operations = (*_OPERATIONS, "truncate") if dialect == "postgresql" else _OPERATIONS
    statements = []
    for table in _guarded():
        for operation in operations:
            trigger = _trigger(table, operation)
            if dialect == "postgresql":
                statements.append(
                    f"DROP TRIGGER IF EXISTS {trigger} ON {preparer.format_table(table)}"
                )
            else:
                statements.append(f"DROP TRIGGER IF EXISTS {trigger}")
    return statements


def protect(bind: Engine | Connection) -> None:
    """Make the database refuse UPDATE and DELETE on the audit tables (idempotent). The tables
    are created first if they are missing."""
    from ..models import create_tables

    create_tables(bind)
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            _install(connection)
    else:
        _install(bind)


def _install(connection: Connection) -> None:
    for statement in [*_drop_statements(connection), *_statements(connection)]:
        connection.exec_driver_sql(statement)


def unprotect(bind: Engine | Connection) -> None:
    """Remove the guard :func:`protect` installed (idempotent)."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            _uninstall(connection)
    else:
        _uninstall(bind)


def _uninstall(connection: Connection) -> None:
    for statement in _drop_statements(connection):
        connection.exec_driver_sql(statement)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_FUNCTION}()")


def is_protected(connection: Connection) -> bool:
    """Whether the guard is on ``audit_log`` (its UPDATE trigger exists)."""
    name = _trigger(audit_log_table, "UPDATE")
    dialect = connection.dialect.name
    if dialect == "postgresql":
        query = "SELECT 1 FROM pg_trigger WHERE tgname = :name AND NOT tgisinternal"
    elif dialect in ("mysql", "mariadb"):
        query = (
            "SELECT 1 FROM information_schema.triggers "
            "WHERE trigger_schema = DATABASE() AND trigger_name = :name"
        )
    else:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = :name"
    return connection.execute(sa.text(query), {"name": name}).first() is not None


@contextmanager
def maintenance(connection: Connection) -> Iterator[None]:
    """Lift the guard for auditlog's own maintenance, inside ``connection``'s transaction
    (which must be begun). On SQLite the guard is back before the block's changes commit."""
    if not connection.in_transaction():
        raise ValueError("maintenance(): begin a transaction on the connection first")
    dialect = connection.dialect.name
    protected = dialect != "sqlite" or is_protected(connection)
    if dialect == "postgresql":
        connection.exec_driver_sql("SELECT set_config('auditlog.maintenance', 'on', true)")
    elif dialect in ("mysql", "mariadb"):
        connection.exec_driver_sql("SET @auditlog_maintenance = 1")
    elif protected:
        for statement in _drop_statements(connection):
            connection.exec_driver_sql(statement)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if dialect == "postgresql":
            try:
                connection.exec_driver_sql("SELECT set_config('auditlog.maintenance', '', true)")
            except sa.exc.DBAPIError:
                # the block's error aborted the transaction: the setting, local to it, goes with
                # its rollback (and that error is the one to see)
                if not failed:
                    raise
        elif dialect in ("mysql", "mariadb"):
            connection.exec_driver_sql("SET @auditlog_maintenance = NULL")
        elif protected:
            for statement in _sqlite_triggers(connection):
                connection.exec_driver_sql(statement)


#: Refuses TRUNCATE of one partition by its own name while ``audit_log`` has the guard.
_TRUNCATE_FUNCTION = "auditlog_refuse_partition_truncate"
_TRUNCATE_TRIGGER = "auditlog_no_truncate_partition"


def guard_partitions(connection: Connection) -> None:
    """Give every partition of ``audit_log`` (PostgreSQL) a TRUNCATE trigger that follows the
    guard.

    PostgreSQL clones the guard's row triggers (UPDATE, DELETE) onto every partition, but not
    its statement trigger on TRUNCATE: ``TRUNCATE audit_log_2026_11`` would pass. This trigger
    refuses it whenever the partition's parent has the guard's TRUNCATE trigger (so it follows
    ``protect()`` and ``unprotect()`` without either knowing about it) and the transaction is
    not auditlog's own maintenance. A detached partition has no parent: it is not guarded."""
    preparer = connection.dialect.identifier_preparer
    connection.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {_TRUNCATE_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF coalesce(current_setting('auditlog.maintenance', true), '') <> 'on' AND EXISTS (\n"
        "    SELECT 1 FROM pg_inherits i JOIN pg_trigger t ON t.tgrelid = i.inhparent\n"
        f"    WHERE i.inhrelid = TG_RELID AND t.tgname = '{_trigger(audit_log_table, 'truncate')}'\n"
        "  ) THEN\n"
        "    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'auditlog: TRUNCATE on ' || "
        "TG_TABLE_NAME || ' is refused: the audit log is append-only (auditlog.protect)';\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $$"
    )
    unguarded = connection.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:parent) AND NOT EXISTS ("
            "  SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = :trigger)"
        ),
        {"parent": preparer.quote(audit_log_table.name), "trigger": _TRUNCATE_TRIGGER},
    ).scalars()
    for name in list(unguarded):
        connection.exec_driver_sql(
            f"CREATE TRIGGER {_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {preparer.quote(name)} "
            f"FOR EACH STATEMENT EXECUTE PROCEDURE {_TRUNCATE_FUNCTION}()"
        )
