"""The database a command works on, and how a command fails (see docs/cli.md).

Exit status: 1 when the database cannot be used (unreachable, no ``audit_log`` table, a failing
query) or the server cannot listen, 2 for bad arguments. Errors are one line, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..models import create_tables

__all__ = ["DATABASE_URL_ENV", "CommandError", "first_line", "open_database", "shown"]

#: The environment variable of the database URL.
DATABASE_URL_ENV = "AUDITLOG_DATABASE_URL"
_CONNECT_TIMEOUT_DRIVERS = {"psycopg", "psycopg2", "pymysql", "mysqldb"}


class CommandError(Exception):
    """A failure to report on stderr with an exit status, without a traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _url(raw: str | None) -> URL:
    if not raw:
        raise CommandError(f"--database-url is required (or set {DATABASE_URL_ENV})", 2)
    try:
        url = sa.make_url(raw)
    except ArgumentError:
        raise CommandError(f"--database-url: {raw!r} is not a database URL", 2) from None
    driver = url.drivername.partition("+")[2]  # explicit only: the default needs the dialect
    if driver in _CONNECT_TIMEOUT_DRIVERS and "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": "10"})
    return url


def shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


def first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def open_database(raw_url: str | None, *, create: bool = False) -> Engine:
    """An engine on a reachable database holding ``audit_log`` (created when ``create``)."""
    url = _url(raw_url)
    path = _sqlite_file(url)
    if path is not None and not create and not path.is_file():
        raise CommandError(f"no SQLite database file at {str(path)!r}")
    try:
        engine = sa.create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise CommandError(f"--database-url: cannot use {shown(url)}: {exc}", 2) from None
    try:
        with engine.connect() as connection:
            if create:
                create_tables(connection)
                connection.commit()
            elif not sa.inspect(connection).has_table("audit_log"):
                raise CommandError(
                    f"{shown(url)} has no audit_log table; create it with "
                    "auditlog.create_tables(engine) (or try `auditlog demo`)"
                )
    except SQLAlchemyError as exc:
        engine.dispose()
        raise CommandError(f"cannot use the database {shown(url)}: {first_line(exc)}") from None
    except CommandError:
        engine.dispose()
        raise
    return engine
