"""The safe bound: a time before which no entry can still commit, per database.

Entry ids are ULIDs stamped at flush time in the application, so a transaction may commit an
entry older than entries already relayed. The relay keeps a *horizon* below which everything
committed was relayed; it may only move it up to a time before which no transaction in flight
can still commit an entry (docs/streaming.md gives each argument):

- PostgreSQL: the oldest ``xact_start`` of the database's other sessions
  (``pg_stat_activity``), minus ``margin``. Sessions of other roles are only visible with
  ``pg_read_all_stats`` (or as that role): when any is hidden, the bound is refused.
- MariaDB/MySQL: the oldest ``trx_started`` of ``information_schema.INNODB_TRX`` (needs the
  ``PROCESS`` privilege), minus ``margin``.
- SQLite: one writer at a time. The caller holds the write lock (its transaction wrote
  first), so no write transaction is in flight; a writer waiting for the lock drew its ids at
  most its busy timeout ago: now minus ``margin`` (set it above the writers' busy timeout).

``margin`` also covers the clock difference between the application hosts and the database,
and the time between drawing an id and the transaction's first statement.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["DEFAULT_MARGIN", "SafeBound", "safe_bound"]

#: Seconds taken off the oldest transaction's start (clock skew, id drawn before BEGIN, a
#: SQLite writer's busy timeout).
DEFAULT_MARGIN = 10.0

# Another role's session shows its database but no backend_type, state or xact_start.
_PG = sa.text(
    "SELECT clock_timestamp(), "
    "min(xact_start) FILTER (WHERE backend_type = 'client backend'), "
    "count(*) FILTER (WHERE backend_type IS NULL) "
    "FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()"
)
_MARIADB = sa.text(
    "SELECT UTC_TIMESTAMP(6), "
    "TIMESTAMPDIFF(MICROSECOND, COALESCE(MIN(trx_started), NOW(6)), NOW(6)) "
    "FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id <> CONNECTION_ID()"
)


@dataclasses.dataclass(frozen=True)
class SafeBound:
    """``at``: no entry stamped before it can still commit (null when unknown); ``note``: why
    it is unknown."""

    at: dt.datetime | None
    note: str | None = None


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def safe_bound(connection: Connection, margin: float = DEFAULT_MARGIN) -> SafeBound:
    """The bound for the database of ``connection``, which must hold a transaction that has
    already written (on SQLite, the write lock)."""
    name = connection.dialect.name
    delta = dt.timedelta(seconds=margin)
    if name == "postgresql":
        now, oldest, hidden = connection.execute(_PG).one()
        if hidden:
            return SafeBound(
                None,
                f"{hidden} session(s) of other roles are hidden from this role in "
                "pg_stat_activity: grant it pg_read_all_stats",
            )
        start = min(_utc(now), _utc(oldest)) if oldest is not None else _utc(now)
        return SafeBound(start - delta)
    if name in {"mysql", "mariadb"}:
        try:
            now, age = connection.execute(_MARIADB).one()
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            return SafeBound(
                None, f"cannot read information_schema.INNODB_TRX (grant PROCESS): {detail}"
            )
        return SafeBound(_utc(now) - dt.timedelta(microseconds=int(age)) - delta)
    if name == "sqlite":
        return SafeBound(dt.datetime.now(dt.timezone.utc) - delta)
    return SafeBound(None, f"no safe bound is known for {name}: the horizon stays")
