"""Retention by partitions: dropping a month of 1M entries, and what writers wait meanwhile.

On a PostgreSQL ``audit_log`` partitioned by month (``create_tables(partitioned=True)``), seeds
``--rows`` entries into January 2025 (``INSERT ... SELECT`` from ``generate_series``: ids are
ULIDs of their timestamps, states of a few keys, 200 tenants) and 20,000 into each of February,
March and April, then, ``--runs`` times: a writer inserts one entry per transaction into the
current month while ``drop_partitions`` detaches and drops January in one transaction (timed up
to its commit), and January is seeded again for the next run. Prints each run, the median drop
time, the writer's longest wait during the drop against its idle p99, and the EXPLAIN ANALYZE
of a time-bounded ``query_history`` read taken with January present (the plan pasted in
docs/partitions.md)::

    python -m benchmarks.partitions                      # 1M entries, 5 runs
    python -m benchmarks.partitions --rows 100000 --runs 3

The database (``AUDITLOG_BENCH_PARTITIONS_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/bench_lifecycle``) is the benchmark's own: its
audit tables are dropped and created again. Results: docs/performance.md, "Partitions".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import auditlog
from auditlog.lifecycle.partitions import create_partitions, drop_partitions
from auditlog.models import audit_log_table, content_type_table

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_lifecycle"
URL_VARIABLE = "AUDITLOG_BENCH_PARTITIONS_URL"
UTC = dt.timezone.utc
JANUARY = dt.datetime(2025, 1, 1, tzinfo=UTC)
FEBRUARY = dt.datetime(2025, 2, 1, tzinfo=UTC)

# One entry per generated number, spread over the month from ``:start``; its id is a ULID whose
# 48-bit time is the entry's millisecond (then 80 bits from md5), as capture writes it.
_SEED = """
INSERT INTO audit_log (id, tenant_id, user_id, action_type, "timestamp", ip_address, user_agent,
                       object_id, content_type, before_state, after_state, changed_fields,
                       transaction_id, extra, renamed_to)
SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0')
        || substr(md5(n::text), 1, 20))::uuid,
       'tenant-' || (n % 200), 'user-' || (n % 5000),
       (ARRAY['create', 'update', 'update', 'delete'])[n % 4 + 1],
       ts, '10.0.' || (n % 250) || '.' || (n % 200), 'bench/1.0', (n % 100000)::text, :ctype,
       jsonb_build_object('status', 'draft', 'amount', n % 1000),
       jsonb_build_object('status', 'active', 'amount', n % 1000 + 1),
       '["status", "amount"]'::jsonb, NULL, NULL, NULL
FROM (SELECT n, :start + (n * :span / :rows) * interval '1 microsecond' AS ts
      FROM generate_series(0, :rows - 1) AS n) AS s
"""


def _engine(url: str) -> Engine:
    return sa.create_engine(url, pool_size=4)


def _content_type(engine: Engine) -> int:
    with engine.begin() as connection:
        return int(
            connection.execute(
                sa.insert(content_type_table)
                .values(name="bench.Loan", table_name="loan")
                .returning(content_type_table.c.id)
            ).scalar_one()
        )


def _seed(engine: Engine, ctype: int, start: dt.datetime, rows: int) -> float:
    """``rows`` entries spread over the month from ``start``; the seconds it took."""
    end = (
        start.replace(month=start.month + 1)
        if start.month < 12
        else start.replace(year=start.year + 1, month=1)
    )
    span = int((end - start).total_seconds() * 1_000_000) - 1
    began = time.perf_counter()
    with engine.begin() as connection:
        create_partitions(connection, ahead=0, now=start)
        connection.execute(
            sa.text(_SEED), {"ctype": ctype, "start": start, "span": span, "rows": rows}
        )
        connection.exec_driver_sql("ANALYZE audit_log")
    return time.perf_counter() - began


class _Writer(threading.Thread):
    """Inserts one entry per transaction into the current month; records each latency."""

    def __init__(self, engine: Engine, ctype: int) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.ctype = ctype
        self.latencies: list[tuple[float, float]] = []  # (started, seconds)
        self.stop = threading.Event()

    def run(self) -> None:
        from ulid import ULID

        with self.engine.connect() as connection:
            while not self.stop.is_set():
                now = dt.datetime.now(UTC)
                began = time.perf_counter()
                with connection.begin():
                    connection.execute(
                        sa.insert(audit_log_table).values(
                            id=str(ULID.from_datetime(now)),
                            action_type="create",
                            timestamp=now,
                            user_agent="bench",
                            object_id="w",
                            content_type=self.ctype,
                        )
                    )
                self.latencies.append((began, time.perf_counter() - began))
                time.sleep(0.002)


def _drop(engine: Engine) -> tuple[float, int]:
    """January detached and dropped, committed; (seconds, entries dropped)."""
    began = time.perf_counter()
    with engine.begin() as connection:
        dropped = drop_partitions(connection, FEBRUARY)
    seconds = time.perf_counter() - began
    assert [p.name for p, _ in dropped] == ["audit_log_2025_01"], dropped
    return seconds, dropped[0][1]


def _explain(engine: Engine) -> str:
    """The plan of the statements a time-bounded query_history read sends."""
    sent: list[tuple[str, object]] = []

    def capture(
        conn: object, cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        if "FROM audit_log" in statement:
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            auditlog.query_history(
                session,
                tenant_id="tenant-7",
                since=dt.datetime(2025, 2, 10, tzinfo=UTC),
                until=dt.datetime(2025, 3, 10, tzinfo=UTC),
            )
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    lines: list[str] = []
    with engine.connect() as connection:
        for statement, parameters in sent:
            lines.append(statement)
            plan = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {statement}",
                parameters,  # type: ignore[arg-type]
            )
            lines.extend(row[0] for row in plan)
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get(URL_VARIABLE, DEFAULT_URL))
    parser.add_argument("--rows", type=int, default=1_000_000, help="entries in January (1M)")
    parser.add_argument("--runs", type=int, default=5, help="drops timed (5)")
    args = parser.parse_args()

    engine = _engine(args.database_url)
    with engine.begin() as connection:
        auditlog.unprotect(connection)
        auditlog.metadata.drop_all(connection)
    auditlog.create_tables(engine, partitioned=True)
    auditlog.protect(engine)  # as in production: the guard does not slow the drop
    ctype = _content_type(engine)
    for month in (2, 3, 4):
        _seed(engine, ctype, dt.datetime(2025, month, 1, tzinfo=UTC), 20_000)
    print(f"PostgreSQL {engine.dialect.server_version_info}, {args.rows:,} entries in January 2025")

    plan = ""
    drops: list[float] = []
    waits: list[float] = []
    idle_p99: list[float] = []
    for run in range(1, args.runs + 1):
        seeded = _seed(engine, ctype, JANUARY, args.rows)
        if run == 1:  # January present: the plan shows it pruned, not absent
            plan = _explain(engine)
        writer = _Writer(engine, ctype)
        writer.start()
        time.sleep(2.0)  # idle latencies first
        idle = [seconds for _, seconds in writer.latencies]
        began = time.perf_counter()
        seconds, count = _drop(engine)
        time.sleep(0.5)
        writer.stop.set()
        writer.join()
        assert count == args.rows, (count, args.rows)
        during = [
            s
            for started, s in writer.latencies
            if started + s >= began and started <= began + seconds
        ]
        drops.append(seconds)
        waits.append(max(during, default=0.0))
        idle_p99.append(statistics.quantiles(idle, n=100)[98] if len(idle) >= 100 else max(idle))
        print(
            f"run {run}: seeded {args.rows:,} in {seeded:.1f} s; drop_partitions + commit "
            f"{seconds * 1000:.0f} ms; writer's longest wait during it {waits[-1] * 1000:.1f} ms "
            f"(idle p99 {idle_p99[-1] * 1000:.1f} ms)"
        )
    print(
        f"median of {args.runs}: drop {statistics.median(drops) * 1000:.0f} ms "
        f"(min {min(drops) * 1000:.0f}, max {max(drops) * 1000:.0f}); writer's longest wait "
        f"{statistics.median(waits) * 1000:.1f} ms, idle p99 {statistics.median(idle_p99) * 1000:.1f} ms"
    )
    print()
    print(plan)
    engine.dispose()


if __name__ == "__main__":
    main()
