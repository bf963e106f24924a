"""Reads: ``query_history`` over a seeded audit log of many tenants.

The log is seeded in one statement where the database can generate rows (PostgreSQL:
``generate_series``; MariaDB: the Sequence engine's ``seq_1_to_N``), in batches from Python on
SQLite. Row *g* gets a scrambled number ``h = g * 2654435761 mod 2^31`` from which every column
is drawn, so the values do not line up with each other:

- 500 tenants; one large tenant holds 1 in 5 entries (200,000 of 1,000,000), the rest share the
  others. Every query reads the large tenant, the worst case for counts and offsets.
- 50 users, 200 addresses, 20 content types, 20,000 object ids; 60% updates, 30% creates,
  10% deletes; one entry every 30 seconds, so a million entries span about a year.

Each query is timed end to end (validation, ``COUNT``, page, pydantic entries) over repeated calls,
and run once more under ``EXPLAIN ANALYZE`` (PostgreSQL), ``ANALYZE`` (MariaDB) or ``EXPLAIN QUERY
PLAN`` (SQLite) with the exact SQL and parameters the library sent, to show the index it used.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import statistics
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from . import backends

__all__ = ["run_reads"]

_SCRAMBLE = 2654435761
_START = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
_STEP_SECONDS = 30
TENANTS = 500
BIG_TENANT_SHARE = 5  # one entry in five belongs to the large tenant

_PG_SEED = """
INSERT INTO audit_log (id, tenant_id, user_id, action_type, "timestamp", ip_address, user_agent,
                       object_id, content_type, before_state, after_state)
SELECT encode(decode(lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0'), 'hex')
           || substring(uuid_send(gen_random_uuid()) FROM 1 FOR 10), 'hex')::uuid,
       CASE WHEN h % 5 = 0 THEN md5('tenant0')::uuid::text
            ELSE md5('tenant' || (1 + (h / 5) % 499))::uuid::text END,
       'user-' || (h / 7) % 50,
       action,
       ts,
       '198.51.' || (h / 13) % 4 || '.' || (h / 17) % 50,
       'Mozilla/5.0 (bench)',
       ((h / 23) % 20000)::text,
       1 + (h / 29) % 20,
       CASE WHEN action <> 'create' THEN jsonb_build_object(
           'id', (h / 23) % 20000, 'quantity', h % 500, 'price', (h % 100000)::text,
           'name', 'Item ' || (h / 23) % 20000) END,
       CASE WHEN action <> 'delete' THEN jsonb_build_object(
           'id', (h / 23) % 20000, 'quantity', h % 500 + 1, 'price', (h % 100000)::text,
           'name', 'Item ' || (h / 23) % 20000) END
FROM (
    SELECT g, h, timestamptz '2024-06-01 00:00:00+00' + g * interval '30 seconds' AS ts,
           CASE WHEN (h / 11) % 10 < 6 THEN 'update'
                WHEN (h / 11) % 10 < 9 THEN 'create' ELSE 'delete' END AS action
    FROM (SELECT g, (g::bigint * 2654435761) % 2147483648 AS h
          FROM generate_series(1, :rows) AS g) AS numbered
) AS s
"""

_MARIADB_SEED = """
INSERT INTO audit_log (id, tenant_id, user_id, action_type, `timestamp`, ip_address, user_agent,
                       object_id, content_type, before_state, after_state)
SELECT LOWER(CONCAT(LPAD(HEX(FLOOR(UNIX_TIMESTAMP(ts) * 1000)), 12, '0'), HEX(RANDOM_BYTES(10)))),
       CASE WHEN h % 5 = 0 THEN uuid_text(MD5('tenant0'))
            ELSE uuid_text(MD5(CONCAT('tenant', 1 + (h DIV 5) % 499))) END,
       CONCAT('user-', (h DIV 7) % 50),
       action,
       ts,
       CONCAT('198.51.', (h DIV 13) % 4, '.', (h DIV 17) % 50),
       'Mozilla/5.0 (bench)',
       CAST((h DIV 23) % 20000 AS CHAR),
       1 + (h DIV 29) % 20,
       CASE WHEN action <> 'create' THEN JSON_OBJECT(
           'id', (h DIV 23) % 20000, 'quantity', h % 500, 'price', CAST(h % 100000 AS CHAR),
           'name', CONCAT('Item ', (h DIV 23) % 20000)) END,
       CASE WHEN action <> 'delete' THEN JSON_OBJECT(
           'id', (h DIV 23) % 20000, 'quantity', h % 500 + 1, 'price', CAST(h % 100000 AS CHAR),
           'name', CONCAT('Item ', (h DIV 23) % 20000)) END
FROM (
    SELECT seq AS g, h, TIMESTAMP '2024-06-01 00:00:00' + INTERVAL (seq * 30) SECOND AS ts,
           CASE WHEN (h DIV 11) % 10 < 6 THEN 'update'
                WHEN (h DIV 11) % 10 < 9 THEN 'create' ELSE 'delete' END AS action
    FROM (SELECT seq, (seq * 2654435761) % 2147483648 AS h FROM seq_1_to_{rows}) AS numbered
) AS s
"""

# MariaDB has no md5-to-uuid cast: format the 32 hex digits as 8-4-4-4-12.
_MARIADB_UUID_TEXT = """
CREATE FUNCTION IF NOT EXISTS uuid_text(hex CHAR(32)) RETURNS CHAR(36) DETERMINISTIC
RETURN CONCAT_WS('-', SUBSTR(hex, 1, 8), SUBSTR(hex, 9, 4), SUBSTR(hex, 13, 4),
                 SUBSTR(hex, 17, 4), SUBSTR(hex, 21, 12))
"""


def _tenant(k: int) -> str:
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.md5(f"tenant{k}".encode()).hexdigest()))


BIG_TENANT = _tenant(0)


def _python_rows(first: int, last: int) -> list[dict[str, Any]]:
    """Rows ``first..last`` (inclusive) as the SQL seeds compute them, for SQLite."""
    from ulid import ULID

    rows = []
    for g in range(first, last + 1):
        h = (g * _SCRAMBLE) % 2147483648
        ts = _START + dt.timedelta(seconds=g * _STEP_SECONDS)
        bucket = (h // 11) % 10
        action = "update" if bucket < 6 else "create" if bucket < 9 else "delete"
        obj = (h // 23) % 20000
        state = {"id": obj, "quantity": h % 500, "price": str(h % 100000), "name": f"Item {obj}"}
        rows.append(
            {
                "id": bytes(ULID.from_datetime(ts).bytes),
                "tenant_id": BIG_TENANT if h % 5 == 0 else _tenant(1 + (h // 5) % 499),
                "user_id": f"user-{(h // 7) % 50}",
                "action_type": action,
                "timestamp": ts,
                "ip_address": f"198.51.{(h // 13) % 4}.{(h // 17) % 50}",
                "user_agent": "Mozilla/5.0 (bench)",
                "object_id": str(obj),
                "content_type": 1 + (h // 29) % 20,
                "before_state": state if action != "create" else None,
                "after_state": {**state, "quantity": state["quantity"] + 1}
                if action != "delete"
                else None,
            }
        )
    return rows


def _seeded(engine: Engine, rows: int) -> bool:
    inspector = sa.inspect(engine)
    if not inspector.has_table("audit_log") or not inspector.has_table("bench_reads_seed"):
        return False
    from auditlog.models import audit_log_table

    wanted = {index.name for index in audit_log_table.indexes}
    if {index["name"] for index in inspector.get_indexes("audit_log")} != wanted:
        return False  # seeded under another index set: seed again
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql("SELECT max(rows_seeded) FROM bench_reads_seed").scalar() == rows
        )


def seed(engine: Engine, rows: int) -> float:
    """Create and fill the audit tables with ``rows`` entries; returns the seconds it took."""
    import auditlog
    from auditlog.models import audit_log_table, content_type_table

    backend = engine.dialect.name
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_reads_seed")
        audit_log_table.drop(conn, checkfirst=True)
        content_type_table.drop(conn, checkfirst=True)
    auditlog.create_tables(engine)
    with engine.begin() as conn:
        conn.execute(
            content_type_table.insert(),
            [{"name": f"app.models.Model{k}", "table_name": f"model_{k}"} for k in range(1, 21)],
        )
        if backend == "postgresql":
            conn.execute(sa.text(_PG_SEED), {"rows": rows})
        elif backend in {"mariadb", "mysql"}:
            conn.exec_driver_sql(_MARIADB_UUID_TEXT)
            conn.exec_driver_sql(_MARIADB_SEED.format(rows=int(rows)).replace("%", "%%"))
        else:
            for first in range(1, rows + 1, 20_000):
                conn.execute(
                    audit_log_table.insert(), _python_rows(first, min(rows, first + 19_999))
                )
        conn.exec_driver_sql("CREATE TABLE bench_reads_seed (rows_seeded INTEGER)")
        conn.exec_driver_sql(f"INSERT INTO bench_reads_seed VALUES ({int(rows)})")
    # Fresh statistics (and, on PostgreSQL, a visibility map for index-only scans).
    if backend == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE audit_log")
    elif backend in {"mariadb", "mysql"}:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE TABLE audit_log")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - start


def _queries(deep_page: int) -> dict[str, dict[str, Any]]:
    """Name -> keyword arguments of ``query_history``, all within the large tenant."""
    t = {"tenant_id": BIG_TENANT}
    return {
        "tenant": t,
        "user_id": {**t, "user_id": "user-7"},
        "ip_address": {**t, "ip_address": "198.51.1.7"},
        "action_type": {**t, "action_type": "delete"},
        "object_id": {**t, "object_id": "1234"},
        "content_type": {**t, "content_type": 5},
        f"page {deep_page}": {**t, "page": deep_page},
        "all tenants": {},
    }


def _states_as_of(rows: int) -> dict[str, Any]:
    """Time travel: one object's state at a moment, over several objects and moments (each call
    takes the next pair), across tenants and within the large one."""
    from auditlog.timetravel.asof import latest_entry, state_of

    span = dt.timedelta(seconds=_STEP_SECONDS * rows)
    moments = [_START + span * f for f in (0.25, 0.5, 0.9)]
    pairs = itertools.cycle([(str(o), m) for o in (17, 1234, 9876, 15000) for m in moments])

    def state_as_of(session: Session, tenant: str | None = None) -> Any:
        object_id, at = next(pairs)
        found = latest_entry(session, "app.models.Model5", object_id, (at, None), tenant_id=tenant)
        return state_of(found, object_id)

    return {
        "state as of": state_as_of,
        "state as of, in the tenant": lambda session: state_as_of(session, BIG_TENANT),
    }


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000,
        "n": len(ordered),
    }


class _Recorder:
    """Collects the statements a block sends, to explain them afterwards."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []

    def __enter__(self) -> _Recorder:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if not statement.lstrip().upper().startswith("EXPLAIN"):  # a count's own estimate
            self.statements.append((statement, parameters))


def _explain(engine: Engine, statement: str, parameters: Any) -> tuple[str, list[str]]:
    """The plan of one statement as text, and the indexes it reads."""
    prefix = {
        "postgresql": "EXPLAIN (ANALYZE, BUFFERS) ",
        "mariadb": "ANALYZE ",
        "mysql": "ANALYZE ",
        "sqlite": "EXPLAIN QUERY PLAN ",
    }[engine.dialect.name]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(prefix + statement, parameters)
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        cursor.close()
        raw.rollback()
    finally:
        raw.close()
    if "key" in names:  # MariaDB: the index chosen is the "key" column, not "possible_keys"
        used = {str(row[names.index("key")]) for row in rows if row[names.index("key")]}
        lines = [" | ".join(names)]
    else:
        used = set()
        lines = []
    lines += [" | ".join("" if v is None else str(v) for v in row) for row in rows]
    text = "\n".join(lines)
    if not used:
        used = set(re.findall(r"ix_audit_log_\w+|audit_log_pkey|sqlite_autoindex_\w+", text))
    return text, sorted(used)


def _time_call(engine: Engine, call: Any, repeat: int) -> list[float]:
    samples = []
    for i in range(repeat + 3):
        with Session(engine) as session:
            start = time.perf_counter()
            call(session)
            elapsed = time.perf_counter() - start
        if i >= 3:  # warm-up: connection, statement cache, buffer cache
            samples.append(elapsed)
    return samples


def run_reads(backend: str, *, rows: int, repeat: int, sqlite_path: str | None) -> dict[str, Any]:
    """Seed (unless already seeded with ``rows``) and time every query; returns figures and plans."""
    import auditlog
    from auditlog import query as query_module

    if backend == "postgresql":
        admin = backends.make_engine(backend)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{backends.READ_SCHEMA}"')
        admin.dispose()
    engine = backends.make_engine(backend, schema=backends.READ_SCHEMA, sqlite_path=sqlite_path)
    out: dict[str, Any] = {"rows": rows, "tenant_rows": None, "queries": {}, "plans": {}}
    try:
        out["seed_seconds"] = None if _seeded(engine, rows) else seed(engine, rows)
        with engine.connect() as conn:
            out["tenant_rows"] = conn.execute(
                sa.text("SELECT count(*) FROM audit_log WHERE tenant_id = :t"), {"t": BIG_TENANT}
            ).scalar_one()

        def numbered(kwargs: dict[str, Any]) -> Any:
            return lambda session: auditlog.query_history(session, **kwargs)

        pages = max(1, out["tenant_rows"] // 20)
        depths = [d for d in (1000, 9000) if d <= pages] or [pages]
        calls: dict[str, Any] = {name: numbered(kw) for name, kw in _queries(depths[0]).items()}
        cursor_fn = getattr(query_module, "query_history_cursor", None)
        cursor_cls = getattr(query_module, "Cursor", None)
        if cursor_fn is not None and cursor_cls is not None:
            for depth in depths:
                with Session(engine) as session:
                    before = auditlog.query_history(
                        session, tenant_id=BIG_TENANT, page=max(1, depth - 1), page_size=20
                    )
                    anchor = before.results[-1]
                token = cursor_cls(anchor.timestamp, anchor.id, "next").encode()
                calls[f"cursor page {depth}"] = lambda session, token=token: cursor_fn(
                    session, tenant_id=BIG_TENANT, cursor=token, page_size=20
                )
            calls["cursor page 1"] = lambda session: cursor_fn(
                session, tenant_id=BIG_TENANT, page_size=20
            )
        else:
            out["cursor"] = "query_history_cursor is not available in this version"
        calls.update(_states_as_of(rows))
        for name, call in calls.items():
            out["queries"][name] = _percentiles(_time_call(engine, call, repeat))
            with _Recorder(engine) as recorder, Session(engine) as session:
                call(session)
            plans = []
            for sql, params in recorder.statements:
                plan, used = _explain(engine, sql, params)
                plans.append({"sql": sql, "plan": plan, "indexes": used})
            out["plans"][name] = plans
            out["queries"][name]["indexes"] = [" + ".join(p["indexes"]) or "-" for p in plans]
    finally:
        engine.dispose()
    return out
