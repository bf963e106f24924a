"""Monthly partitions of ``audit_log`` on PostgreSQL: created ahead, dropped whole.

``create_tables(bind, partitioned=True)`` creates ``audit_log`` partitioned by range of
``timestamp``, one partition per UTC month (``audit_log_2026_11`` holds November 2026) plus a
default partition (``audit_log_default``) for any entry outside them. The primary key is
``(id, timestamp)``, since PostgreSQL requires the partition key in it: an id is unique by
construction (a ULID), not by a constraint across partitions. The indexes are declared on the
table itself, so every partition has them.

- :func:`create_partitions` (``auditlog partitions --ahead N``, run monthly from cron) creates
  the coming months. The default partition's entries of a month being created are moved into
  it in the same transaction (default detached, month created, entries moved, default
  attached again), so creating a month late loses nothing and never fails on them.
- :func:`drop_partitions` detaches and drops the months entirely before a date: retention in
  milliseconds rather than a ``DELETE`` of millions of rows. ``auditlog.prune`` calls it on a
  partitioned table. ``DETACH PARTITION`` takes an ``ACCESS EXCLUSIVE`` lock on ``audit_log``
  and its default partition until the transaction ends: writers wait for the rest of that
  transaction, which is why the rows are counted before detaching (under a ``SHARE`` lock on
  the month alone, which blocks only inserts into that month).

See docs/partitions.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex, CreateTable

from ..exceptions import ConfigurationError
from ..integrity.guard import guard_partitions, maintenance
from ..models import audit_log_table, content_type_table

__all__ = [
    "MAX_AHEAD",
    "Partition",
    "create_partitioned_tables",
    "create_partitions",
    "drop_partitions",
    "estimated_rows",
    "is_partitioned",
    "list_partitions",
    "month_partition",
]

#: Months that ``ahead`` may ask for at most: ten years.
MAX_AHEAD = 120
#: The partition that takes every entry outside the month partitions.
DEFAULT_PARTITION = "audit_log_default"
_UTC = dt.timezone.utc
#: Serializes partition maintenance between processes (any constant; pg_advisory_xact_lock).
_LOCK_KEY = 0x61756469  # "audi"


@dataclass(frozen=True)
class Partition:
    """One partition of ``audit_log``: entries from ``lower`` (inclusive) to ``upper``
    (exclusive); both None for the default partition."""

    name: str
    lower: dt.datetime | None
    upper: dt.datetime | None

    @property
    def is_default(self) -> bool:
        return self.lower is None and self.upper is None


def _require_postgresql(connection: Connection, what: str) -> None:
    dialect = connection.dialect.name
    if dialect != "postgresql":
        raise ConfigurationError(
            f"{what}: partitioning audit_log needs PostgreSQL; this database is {dialect}"
        )


@contextmanager
def _transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """``bind``'s connection in a transaction: our own for an engine, the caller's (begun on
    first use and left to the caller to commit) for a connection."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            yield connection
    else:
        yield bind


def _lock(connection: Connection) -> None:
    """Wait for any other process's partition maintenance, until this transaction ends."""
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def is_partitioned(connection: Connection) -> bool:
    """Whether ``audit_log`` exists and is a partitioned table (False on other databases)."""
    if connection.dialect.name != "postgresql":
        return False
    kind = connection.execute(
        sa.text(
            "SELECT c.relkind FROM pg_class c "
            "WHERE c.oid = to_regclass(:name) AND c.relkind IN ('r', 'p')"
        ),
        {"name": _qualified(connection, audit_log_table.name)},
    ).scalar()
    return kind == "p"


def _qualified(connection: Connection, name: str) -> str:
    """A table name as ``to_regclass`` reads it (quoted where needed; search_path decides)."""
    return connection.dialect.identifier_preparer.quote(name)


def list_partitions(connection: Connection) -> list[Partition]:
    """The partitions of ``audit_log``, oldest first, the default last."""
    _require_postgresql(connection, "list_partitions()")
    if not is_partitioned(connection):
        return []
    # The bounds as PostgreSQL prints them, with their UTC offset, cast back by PostgreSQL:
    # exact whatever the session's time zone. MINVALUE/MAXVALUE (not ours) read as null.
    rows = connection.execute(
        sa.text(
            "SELECT c.relname AS name, p.partdefid = c.oid AS is_default,"
            " (regexp_match(pg_get_expr(c.relpartbound, c.oid),"
            "   'FROM \\(''([^'']*)''\\)'))[1]::timestamptz AS lower,"
            " (regexp_match(pg_get_expr(c.relpartbound, c.oid),"
            "   'TO \\(''([^'']*)''\\)'))[1]::timestamptz AS upper"
            " FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_partitioned_table p ON p.partrelid = i.inhparent"
            " WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": _qualified(connection, audit_log_table.name)},
    ).all()
    partitions = [
        Partition(
            row.name,
            None if row.is_default else _aware(row.lower),
            None if row.is_default else _aware(row.upper),
        )
        for row in rows
    ]
    far = dt.datetime.max.replace(tzinfo=_UTC)
    return sorted(partitions, key=lambda p: (p.is_default, p.lower or p.upper or far, p.name))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(_UTC)


def _month_start(moment: dt.datetime) -> dt.datetime:
    utc = moment.replace(tzinfo=_UTC) if moment.tzinfo is None else moment.astimezone(_UTC)
    return dt.datetime(utc.year, utc.month, 1, tzinfo=_UTC)


def _next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def month_partition(moment: dt.datetime) -> Partition:
    """The month partition that holds ``moment`` (naive means UTC)."""
    lower = _month_start(moment)
    return Partition(f"audit_log_{lower:%Y_%m}", lower, _next_month(lower))


def _check_ahead(ahead: object, what: str) -> int:
    if not isinstance(ahead, int) or isinstance(ahead, bool) or not 0 <= ahead <= MAX_AHEAD:
        raise ValueError(
            f"{what}: ahead must be a number of months from 0 to {MAX_AHEAD}, not {ahead!r}"
        )
    return ahead


def _partitioned_table() -> sa.Table:
    """``audit_log`` as declared, partitioned by month of ``timestamp``, its primary key
    ``(id, timestamp)`` (a key of a partitioned table must hold the partition key)."""
    copy = sa.MetaData()
    content_type_table.to_metadata(copy)  # the foreign key's target
    table = audit_log_table.to_metadata(copy)
    table.c.timestamp.primary_key = True
    table.append_constraint(sa.PrimaryKeyConstraint("id", "timestamp", name="audit_log_pkey"))
    table.dialect_options["postgresql"]["partition_by"] = "RANGE (timestamp)"
    return table


def create_partitioned_tables(
    bind: Engine | Connection, *, ahead: int = 3, now: dt.datetime | None = None
) -> None:
    """Create ``audit_log`` partitioned by month (with ``audit_content_type``), then the
    partitions of :func:`create_partitions`. Harmless when it is already partitioned; an
    unpartitioned ``audit_log`` is refused (its migration: docs/partitions.md)."""
    _check_ahead(ahead, "create_tables(partitioned=True)")
    with _transaction(bind) as connection:
        _require_postgresql(connection, "create_tables(partitioned=True)")
        _lock(connection)
        content_type_table.create(connection, checkfirst=True)
        if sa.inspect(connection).has_table(audit_log_table.name):
            if not is_partitioned(connection):
                raise ConfigurationError(
                    "create_tables(partitioned=True): audit_log exists and is not partitioned; "
                    'move it to partitions first (docs/partitions.md, "Moving an existing '
                    'table to partitions")'
                )
        else:
            table = _partitioned_table()
            connection.execute(CreateTable(table))
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                connection.execute(CreateIndex(index))
        _create_partitions(connection, ahead, now)


def create_partitions(
    bind: Engine | Connection, *, ahead: int, now: dt.datetime | None = None
) -> list[Partition]:
    """Create the partitions of the month of ``now`` (default: the current time) and of the
    ``ahead`` months after it, and the default partition, those missing; returns those created.

    Entries of a month being created that wait in the default partition are moved into it in
    the same transaction. Raises ConfigurationError on another database or an unpartitioned
    ``audit_log``."""
    _check_ahead(ahead, "create_partitions()")
    with _transaction(bind) as connection:
        _require_postgresql(connection, "create_partitions()")
        _lock(connection)
        if not is_partitioned(connection):
            raise ConfigurationError(
                "create_partitions(): audit_log is not a partitioned table; create it with "
                'create_tables(engine, partitioned=True) or move it (docs/partitions.md, "Moving '
                'an existing table to partitions")'
            )
        return _create_partitions(connection, ahead, now)


def _create_partitions(
    connection: Connection, ahead: int, now: dt.datetime | None
) -> list[Partition]:
    existing = {p.name: p for p in list_partitions(connection)}
    created: list[Partition] = []
    start = _month_start(now or dt.datetime.now(_UTC))
    months = [start]
    for _ in range(ahead):
        months.append(_next_month(months[-1]))
    for lower in months:
        partition = month_partition(lower)
        upper = _next_month(lower)
        if partition.name in existing:
            continue
        if any(  # a partition of another shape (made by hand) covers part of the month
            not p.is_default
            and (p.lower is None or p.lower < upper)
            and (p.upper is None or p.upper > lower)
            for p in existing.values()
        ):
            continue
        _create_month(connection, partition, DEFAULT_PARTITION in existing)
        existing[partition.name] = partition
        created.append(partition)
    if DEFAULT_PARTITION not in existing:
        preparer = connection.dialect.identifier_preparer
        connection.exec_driver_sql(
            f"CREATE TABLE {preparer.quote(DEFAULT_PARTITION)} PARTITION OF "
            f"{preparer.format_table(audit_log_table)} DEFAULT"
        )
        created.append(Partition(DEFAULT_PARTITION, None, None))
    guard_partitions(connection)
    return created


def _create_month(connection: Connection, partition: Partition, has_default: bool) -> None:
    """Create one month's partition; entries of that month in the default partition (which
    would make PostgreSQL refuse it) are moved into it: detach the default, create the month,
    copy them into it, remove them from the default, attach it again."""
    preparer = connection.dialect.identifier_preparer
    parent = preparer.format_table(audit_log_table)
    name = preparer.quote(partition.name)
    bounds = {"lower": partition.lower, "upper": partition.upper}
    create = (
        f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM "
        f"('{partition.lower:%Y-%m-%d} 00:00:00+00') TO ('{partition.upper:%Y-%m-%d} 00:00:00+00')"
    )
    default = preparer.quote(DEFAULT_PARTITION)
    in_month = '"timestamp" >= :lower AND "timestamp" < :upper'
    waiting = has_default and bool(
        connection.execute(
            sa.text(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {in_month})"), bounds
        ).scalar_one()
    )
    if not waiting:
        connection.exec_driver_sql(create)
        return
    columns = ", ".join(preparer.quote(c.name) for c in audit_log_table.columns)
    connection.exec_driver_sql(f"ALTER TABLE {parent} DETACH PARTITION {default}")
    connection.exec_driver_sql(create)
    connection.execute(
        sa.text(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {default} WHERE {in_month}"),
        bounds,
    )
    with _maintenance(connection):  # the guard's triggers, if any, refuse a DELETE
        connection.execute(sa.text(f"DELETE FROM {default} WHERE {in_month}"), bounds)
    connection.exec_driver_sql(f"ALTER TABLE {parent} ATTACH PARTITION {default} DEFAULT")


@contextmanager
def _maintenance(connection: Connection) -> Iterator[None]:
    """The guard lifted, unless the caller already lifted it for its transaction (then it
    stays lifted after this block)."""
    lifted = connection.exec_driver_sql(
        "SELECT current_setting('auditlog.maintenance', true) = 'on'"
    ).scalar()
    if lifted:
        yield
        return
    with maintenance(connection):
        yield


def drop_partitions(connection: Connection, before: dt.datetime) -> list[tuple[Partition, int]]:
    """Detach and drop every month partition whose upper bound is at most ``before`` (naive
    means UTC), in the caller's transaction; returns each with the number of entries it held.

    The default partition is never dropped, nor one with an open bound. Each partition's rows
    are counted under a ``SHARE`` lock on it (inserts into it wait, nothing else), then it is
    detached, which locks ``audit_log`` and its default partition ``ACCESS EXCLUSIVE`` until
    the transaction ends, and dropped. The guard's triggers do not see either statement."""
    if not isinstance(before, dt.datetime):
        raise ValueError(f"drop_partitions(): before must be a datetime, not {before!r}")
    _require_postgresql(connection, "drop_partitions()")
    moment = before.replace(tzinfo=_UTC) if before.tzinfo is None else before
    if moment > dt.datetime.now(_UTC):
        raise ValueError(
            f"drop_partitions(): before {moment.isoformat()} is in the future: the month "
            "being written would be dropped"
        )
    _lock(connection)
    if not is_partitioned(connection):
        raise ConfigurationError("drop_partitions(): audit_log is not a partitioned table")
    due = [
        p
        for p in list_partitions(connection)
        if p.lower is not None and p.upper is not None and p.upper <= moment
    ]
    preparer = connection.dialect.identifier_preparer
    parent = preparer.format_table(audit_log_table)
    counted: list[tuple[Partition, int]] = []
    for partition in due:  # counted first: writers wait only from the first DETACH on
        name = preparer.quote(partition.name)
        connection.exec_driver_sql(f"LOCK TABLE {name} IN SHARE MODE")
        rows = connection.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
        counted.append((partition, int(rows)))
    for partition, _ in counted:
        name = preparer.quote(partition.name)
        connection.exec_driver_sql(f"ALTER TABLE {parent} DETACH PARTITION {name}")
        connection.exec_driver_sql(f"DROP TABLE {name}")
    return counted


def estimated_rows(connection: Connection) -> dict[str, int | None]:
    """PostgreSQL's estimate of each partition's entries (``pg_class.reltuples``, as of the
    last ``ANALYZE`` or ``VACUUM``), by name; None when it has none yet."""
    _require_postgresql(connection, "estimated_rows()")
    rows = connection.execute(
        sa.text(
            "SELECT c.relname, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": _qualified(connection, audit_log_table.name)},
    ).all()
    return {name: None if tuples < 0 else round(tuples) for name, tuples in rows}
