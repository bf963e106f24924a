"""On MariaDB, a page's entries are found by their ids first, and a deep cursor page seeks.

For whole rows, MariaDB's optimizer reads a tenant's entries from the newest one and filters
them down to the cursor; the ids alone come from the index as a range that starts at the
cursor. Row counts from ``ANALYZE FORMAT=JSON``, not timings.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from auditlog import AuditLog, query_history
from auditlog.capture.ids import new_ulids
from auditlog.query import Cursor, query_history_cursor

from ..backends import selected_backends
from .test_history import content_type_id
from .test_indexes import captured

pytestmark = pytest.mark.parametrize(
    "backend", [b for b in selected_backends() if b == "mariadb"], indirect=True
)

ROWS = 6_000
TENANTS = 3
TENANT = "tenant-1"


@pytest.fixture
def history(engine: Engine) -> Engine:
    """6,000 entries a second apart over 3 tenants, two users each."""
    ctype = content_type_id(engine, "tests.pages.Thing")
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(ROWS):
        at = start + dt.timedelta(seconds=i)
        rows.append(
            {
                "id": new_ulids(at, 1)[0],
                "tenant_id": f"tenant-{i % TENANTS}",
                "user_id": f"user-{i % 2}",
                "action_type": "update",
                "timestamp": at,
                "ip_address": None,
                "user_agent": "",
                "object_id": str(i % 100),
                "content_type": ctype,
                "before_state": {"n": i},
                "after_state": {"n": i + 1},
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(AuditLog), rows)
        conn.exec_driver_sql("ANALYZE TABLE audit_log")
    return engine


def _analyze(engine: Engine, statement: str, parameters: Any) -> Any:
    with engine.connect() as conn:
        return json.loads(
            conn.exec_driver_sql(f"ANALYZE FORMAT=JSON {statement}", parameters).scalar_one()
        )


def _tables(plan: Any) -> Iterator[dict[str, Any]]:
    """Every ``table`` node of a MariaDB plan, derived tables' own included."""
    if isinstance(plan, dict):
        if isinstance(plan.get("table"), dict):
            yield plan["table"]
        for value in plan.values():
            yield from _tables(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _tables(value)


def _audit_log_reads(engine: Engine, statement: str, parameters: Any) -> list[dict[str, Any]]:
    return [
        t
        for t in _tables(_analyze(engine, statement, parameters))
        if t.get("table_name") == "audit_log"
    ]


@pytest.mark.parametrize("filters", [{}, {"user_id": "user-1"}], ids=["tenant", "user"])
def test_a_deep_cursor_page_reads_only_its_own_rows(
    history: Engine, filters: dict[str, Any]
) -> None:
    with Session(history) as session:
        deep = query_history(session, tenant_id=TENANT, page=40, page_size=20, **filters)
        anchor = query_history(session, tenant_id=TENANT, page=39, page_size=20, **filters)
    cursor = Cursor(anchor.results[-1].timestamp, anchor.results[-1].id, "next").encode()
    (statement,) = captured(
        history, lambda s: query_history_cursor(s, tenant_id=TENANT, cursor=cursor, **filters)
    )
    reads = _audit_log_reads(history, *statement)
    assert len(reads) == 2, reads  # the ids (a range from the cursor), then the rows by id
    ids, entries = reads
    assert ids["access_type"] == "range"
    assert ids["r_rows"] <= 22  # the cursor's own entry, the page and one more; not 780
    assert entries["key"] == "PRIMARY" and entries["r_rows"] <= 1
    with Session(history) as session:
        page = query_history_cursor(session, tenant_id=TENANT, cursor=cursor, **filters)
    assert [e.id for e in page.results] == [e.id for e in deep.results]


def test_numbered_pages_find_their_ids_first(history: Engine) -> None:
    """A page by number joins its entries to the ids of an index-only OFFSET scan."""
    _, statement = captured(history, lambda s: query_history(s, tenant_id=TENANT, page=30))
    assert "JOIN (SELECT audit_log.id" in statement[0]
    ids, entries = _audit_log_reads(history, *statement)
    assert ids.get("using_index") is True  # the ids come from the index alone
    assert entries["key"] == "PRIMARY"
    with Session(history) as session:
        page = query_history(session, tenant_id=TENANT, page=30)
        everything = query_history(session, tenant_id=TENANT, page_size=100, page=6)
    assert [e.id for e in page.results] == [e.id for e in everything.results[80:]]
