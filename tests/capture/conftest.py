"""Fixtures of the capture tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ..helpers import rows_kept


@pytest.fixture
def rows_kept_from_delete(engine: Engine) -> Iterator[Callable[[Any], Any]]:
    """Make a DELETE leave some of the rows it matches: on PostgreSQL and SQLite a trigger skips
    customers named "keep"; MariaDB's triggers cannot skip a row, so there the statement gets a
    ``LIMIT`` of 2 instead. Returns what to do to a DELETE statement."""
    dialect = engine.dialect.name
    if dialect in {"mysql", "mariadb"}:
        limit = {f"{dialect}_limit": 2}  # mariadb_limit, mysql_limit
        yield lambda stmt: stmt.with_dialect_options(**limit)
        return
    with rows_kept(engine, "customer", "OLD.name = 'keep'"):
        yield lambda stmt: stmt
