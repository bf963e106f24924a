"""Database URLs, engines and a clean slate for each run.

Every write run starts from empty tables: on PostgreSQL the run's schema (``bench_write``, and
``audit`` for sqlalchemy-audit-trail) is dropped and created again, on MariaDB every table of the
database is dropped, on SQLite each run gets a new file. Reads live apart (``bench_reads`` on
PostgreSQL, their own SQLite file) so that their seeded million rows survive the write runs.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["BACKENDS", "DEFAULT_URLS", "make_engine", "reset"]

BACKENDS = ("sqlite", "postgresql", "mariadb")

DEFAULT_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/bench",
    "mariadb": "mariadb+pymysql://root@127.0.0.1:3306/bench?charset=utf8mb4",
}

#: environment variables that override the default URLs
URL_VARIABLES = {
    "postgresql": "AUDITLOG_BENCH_POSTGRESQL_URL",
    "mariadb": "AUDITLOG_BENCH_MARIADB_URL",
}

WRITE_SCHEMA = "bench_write"
READ_SCHEMA = "bench_reads"


def url_for(backend: str, sqlite_path: str | None = None) -> str:
    """The URL of ``backend``: a file for SQLite, the environment or the default otherwise."""
    if backend == "sqlite":
        if not sqlite_path:
            raise ValueError("SQLite runs need a file path")
        return f"sqlite:///{sqlite_path}"
    return os.environ.get(URL_VARIABLES[backend], DEFAULT_URLS[backend])


def make_engine(
    backend: str, *, schema: str | None = None, sqlite_path: str | None = None
) -> Engine:
    """An engine for one run; on PostgreSQL, ``schema`` becomes the connection's search path."""
    kwargs: dict[str, Any] = {}
    if backend == "postgresql" and schema:
        kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
    return sa.create_engine(url_for(backend, sqlite_path), **kwargs)


def reset(backend: str, *, schemas: tuple[str, ...] = (WRITE_SCHEMA, "audit")) -> None:
    """Drop whatever a previous write run left (SQLite files are new for each run)."""
    if backend == "sqlite":
        return
    engine = sa.create_engine(url_for(backend), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                for schema in schemas:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                if schemas:
                    conn.exec_driver_sql(f'CREATE SCHEMA "{schemas[0]}"')
            else:
                names = [row[0] for row in conn.exec_driver_sql("SHOW TABLES")]
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
                for name in names:
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`")
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
    finally:
        engine.dispose()
