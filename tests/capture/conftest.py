"""Fixtures of the capture tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine


@pytest.fixture
def rows_kept_from_delete(engine: Engine) -> Iterator[Callable[[Any], Any]]:
    """Make a DELETE leave some of the rows it matches: on PostgreSQL and SQLite a trigger skips
    customers named "keep"; MariaDB's triggers cannot skip a row, so there the statement gets a
    ``LIMIT`` of 2 instead. Returns what to do to a DELETE statement."""
    dialect = engine.dialect.name
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION customer_keep() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF OLD.name = 'keep' THEN RETURN NULL; END IF; RETURN OLD; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER customer_keep BEFORE DELETE ON customer "
                "FOR EACH ROW EXECUTE FUNCTION customer_keep()"
            )
        elif dialect == "sqlite":
            # a pooled connection may still hold the schema from before the last test dropped
            # the trigger, and SQLite checks "already exists" against it: reading it refreshes it
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
            conn.exec_driver_sql(
                "CREATE TRIGGER customer_keep BEFORE DELETE ON customer "
                "WHEN OLD.name = 'keep' BEGIN SELECT RAISE(IGNORE); END"
            )
    try:
        if dialect in {"mysql", "mariadb"}:
            limit = {f"{dialect}_limit": 2}  # mariadb_limit, mysql_limit
            yield lambda stmt: stmt.with_dialect_options(**limit)
        else:
            yield lambda stmt: stmt
    finally:
        with engine.begin() as conn:
            if dialect == "postgresql":
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS customer_keep ON customer")
                conn.exec_driver_sql("DROP FUNCTION IF EXISTS customer_keep()")
            elif dialect == "sqlite":
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS customer_keep")
