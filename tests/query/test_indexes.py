"""On PostgreSQL, the SQL query_history runs for each filter is served by an ix_audit_log_* index.

The statements are captured as query_history sends them, then explained with the same
parameters on a table of 20,000 entries over 50 tenants (analyzed, so the planner sees real sizes).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from auditlog import ContentType, query_history
from auditlog.query import Cursor, query_history_cursor
from auditlog.timetravel.asof import latest_entry

from ..backends import selected_backends

pytestmark = pytest.mark.parametrize(
    "backend", [b for b in selected_backends() if b == "postgresql"], indirect=True
)

ROWS = 20_000
TENANTS = 50
TENANT = "tenant-7"
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def content_type_ids(conn: Connection, *names: str) -> list[int]:
    out = []
    for name in names:
        found = conn.scalar(sa.select(ContentType.id).where(ContentType.name == name))
        if found is None:
            conn.execute(sa.insert(ContentType).values(name=name, table_name="manual"))
            found = conn.scalar(sa.select(ContentType.id).where(ContentType.name == name))
        out.append(found)
    return out


@pytest.fixture
def big_history(engine: Engine) -> Engine:
    """20,000 entries, one a second, over 50 tenants, 37 users, many addresses and objects."""
    with engine.begin() as conn:
        first, second = content_type_ids(conn, "tests.bulk.Customer", "tests.bulk.Loan")
        conn.execute(
            sa.text(
                """
                INSERT INTO audit_log (id, tenant_id, user_id, action_type, timestamp,
                                       ip_address, user_agent, object_id, content_type,
                                       before_state, after_state)
                SELECT lpad(to_hex(g), 32, '0')::uuid,
                       'tenant-' || (g % :tenants),
                       'user-' || (g % 37),
                       (ARRAY['create', 'update', 'delete', 'access'])[1 + (g / 3) % 4],
                       timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second',
                       '10.0.' || (g % 9) || '.1',
                       '',
                       (g % 3000)::text,
                       CASE WHEN g % 3 = 0 THEN :second ELSE :first END,
                       NULL,
                       jsonb_build_object('n', g)
                FROM generate_series(1, :rows) AS g
                """
            ),
            {"tenants": TENANTS, "rows": ROWS, "first": first, "second": second},
        )
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE audit_log"))
        conn.execute(sa.text("ANALYZE audit_content_type"))
        conn.commit()
    return engine


def captured(engine: Engine, run: Callable[[Session], Any]) -> list[tuple[str, Any]]:
    """The statements (with parameters) ``run`` sends through a session on ``engine``."""
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with Session(engine) as session:
            run(session)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    # a model's name is turned into its id first, a count past its limit is the planner's
    # estimate: neither reads audit_log
    skipped = ("SELECT audit_content_type.id", "EXPLAIN")
    return [s for s in sent if not s[0].lstrip().startswith(skipped)]


def explain(engine: Engine, statement: str, parameters: Any, *, analyze: bool = False) -> Any:
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters).scalar_one()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def audit_log_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes that read audit_log or one of its indexes."""
    return [
        n
        for n in nodes(plan)
        if n.get("Relation Name") == "audit_log"
        or str(n.get("Index Name", "")).startswith("ix_audit_log_")
    ]


def assert_indexed(plan: dict[str, Any], index: str | None = None) -> list[dict[str, Any]]:
    scans = audit_log_scans(plan)
    kinds = [(n["Node Type"], n.get("Index Name")) for n in scans]
    assert scans, kinds
    assert not [k for k in kinds if k[0] == "Seq Scan"], kinds
    assert any(k[0] in INDEX_SCANS and str(k[1]).startswith("ix_audit_log_") for k in kinds), kinds
    if index is not None:
        assert any(k[1] == index for k in kinds), kinds
    return scans


FILTERS: list[tuple[dict[str, Any], str | None]] = [
    ({}, "ix_audit_log_tenant_time"),
    ({"user_id": "user-3"}, "ix_audit_log_tenant_user"),
    ({"ip_address": "10.0.7.1"}, "ix_audit_log_tenant_ip"),
    ({"action_type": "delete"}, "ix_audit_log_tenant_action"),
    # several actions: the planner may as well read the tenant's entries newest first
    ({"action_type": "create,update"}, None),
    ({"object_id": "57"}, "ix_audit_log_object"),
    ({"content_type": "tests.bulk.Loan"}, "ix_audit_log_tenant_ctype"),
]


@pytest.mark.parametrize(
    ("filters", "index"), FILTERS, ids=[next(iter(f), "tenant_only") for f, _ in FILTERS]
)
def test_each_filter_scoped_by_tenant_uses_its_index(
    big_history: Engine, filters: dict[str, Any], index: str | None
) -> None:
    statements = captured(
        big_history, lambda s: query_history(s, tenant_id=TENANT, page=2, page_size=3, **filters)
    )
    count_sql, page_sql = statements
    assert count_sql[0].lstrip().upper().startswith("SELECT COUNT(*)")
    assert_indexed(explain(big_history, *count_sql))
    assert_indexed(explain(big_history, *page_sql), index)


@pytest.mark.parametrize(
    ("filters", "index"), FILTERS, ids=[next(iter(f), "tenant_only") for f, _ in FILTERS]
)
def test_a_cursor_page_seeks_in_the_index(
    big_history: Engine, filters: dict[str, Any], index: str | None
) -> None:
    with Session(big_history) as session:
        first = query_history_cursor(session, tenant_id=TENANT, page_size=2, **filters)
    assert first.next_cursor is not None
    (page_sql,) = captured(
        big_history,
        lambda s: query_history_cursor(
            s, tenant_id=TENANT, cursor=first.next_cursor, page_size=2, **filters
        ),
    )
    assert_indexed(explain(big_history, *page_sql), index)


def test_an_object_history_across_tenants_uses_the_object_index(big_history: Engine) -> None:
    statements = captured(big_history, lambda s: query_history(s, object_id="57"))
    for statement in statements:
        assert_indexed(explain(big_history, *statement), "ix_audit_log_object")


def test_a_deep_cursor_page_reads_only_its_own_rows(big_history: Engine) -> None:
    """A keyset page starts in the index at the cursor; an OFFSET page reads every row before it.

    Row counts from EXPLAIN ANALYZE, not timings: the index scan of the cursor page returns
    ``page_size + 1`` rows however deep the page is.
    """
    with Session(big_history) as session:
        deep = query_history(session, tenant_id=TENANT, page=19, page_size=20)
        last_before = query_history(session, tenant_id=TENANT, page=18, page_size=20).results[-1]
    cursor = Cursor(last_before.timestamp, last_before.id, "next").encode()
    (keyset_sql,) = captured(
        big_history, lambda s: query_history_cursor(s, tenant_id=TENANT, cursor=cursor)
    )
    _, offset_sql = captured(
        big_history, lambda s: query_history(s, tenant_id=TENANT, page=19, page_size=20)
    )
    (keyset_scan,) = assert_indexed(explain(big_history, *keyset_sql, analyze=True))
    offset_scans = assert_indexed(explain(big_history, *offset_sql, analyze=True))
    assert 'ROW("timestamp", id) <' in keyset_scan["Index Cond"]
    assert keyset_scan["Actual Rows"] == 21  # the page and one row to know there is more
    assert max(n["Actual Rows"] for n in offset_scans) >= 19 * 20
    with Session(big_history) as session:
        page = query_history_cursor(session, tenant_id=TENANT, cursor=cursor)
    assert [e.id for e in page.results] == [e.id for e in deep.results]


def test_unscoped_pages_read_the_time_index(big_history: Engine) -> None:
    """Without a tenant (an app that has none, the command line) pages still come from an index."""
    since = dt.datetime(2025, 1, 1, 3, tzinfo=dt.timezone.utc)
    with Session(big_history) as session:
        cursor = query_history_cursor(session, page_size=50).next_cursor
    count_sql, page_sql = captured(big_history, lambda s: query_history(s, page=3))
    assert "LIMIT" in count_sql[0]  # 20,000 entries: counted up to the limit, then estimated
    window = captured(
        big_history, lambda s: query_history(s, since=since, until=since + dt.timedelta(hours=1))
    )
    (cursor_sql,) = captured(big_history, lambda s: query_history_cursor(s, cursor=cursor))
    for statement in [page_sql, *window, cursor_sql]:
        assert_indexed(explain(big_history, *statement), "ix_audit_log_time")


def test_a_count_past_its_limit_reads_no_further(big_history: Engine) -> None:
    """Counting stops one entry past ``count_limit``; the rest is the planner's estimate."""
    statements = captured(big_history, lambda s: query_history(s, tenant_id=TENANT, count_limit=99))
    count_sql, _ = statements
    plan = explain(big_history, *count_sql, analyze=True)
    assert_indexed(plan)
    (limit,) = [n for n in nodes(plan) if n["Node Type"] == "Limit"]
    assert limit["Actual Rows"] == 100  # what is counted: 99 and one more
    with Session(big_history) as session:
        page = query_history(session, tenant_id=TENANT, count_limit=99)
        exact = query_history(session, tenant_id=TENANT, count_limit=None)
    in_tenant = ROWS // TENANTS
    assert (page.count_exact, exact.count_exact, exact.count) == (False, True, in_tenant)
    assert abs(page.count - in_tenant) <= in_tenant // 10  # analyzed: the estimate is close
    assert page.has_next and page.total_pages == math.ceil(page.count / 20)


def test_an_objects_state_at_a_moment_is_one_indexed_lookup(big_history: Engine) -> None:
    """Time travel reads the object's key and the key it was renamed to from their indexes."""
    with Session(big_history) as session:
        name = session.scalar(sa.select(ContentType.name).order_by(ContentType.id))
    at = (dt.datetime(2025, 1, 1, 3, tzinfo=dt.timezone.utc), None)
    (statement,) = captured(big_history, lambda s: latest_entry(s, name, "57", at))
    scans = assert_indexed(explain(big_history, *statement), "ix_audit_log_object")
    assert "ix_audit_log_renamed" in {n.get("Index Name") for n in scans}
